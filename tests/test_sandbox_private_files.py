"""What the sandbox shows of the host's files: a file's content only when it is meant for every user (A-01).

The cockpit often runs as root (a build box): it can read every file, and a name list of /etc's secrets
cannot know a GitLab runner's token, a cluster's admin.conf or apt's auth.conf. The /etc copy keeps a
file's content only when any user may read it (and search every directory on its way); the rest is
there, empty, with its mode. Each attack runs `cat` in a real bubblewrap sandbox over a fake /etc bound at
/etc; liveness: the same view with the mode rule switched off shows the secret.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cockpit.host.etc_view import EtcView
from cockpit.host.sandbox import Sandbox
from cockpit.host.toolchain_view import ToolchainView

TOKEN = "glrt-PRIVATE-RUNNER-TOKEN-0123456789"


@pytest.fixture
def etc(host_tmp: Path) -> Path:
    etc = host_tmp / "etc"
    etc.mkdir()
    os.chmod(etc, 0o755)
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    os.chmod(etc / "hosts", 0o644)
    runner = etc / "gitlab-runner"
    runner.mkdir(mode=0o755)
    (runner / "config.toml").write_text(f'token = "{TOKEN}-runner"\n')
    os.chmod(runner / "config.toml", 0o600)  # private by its mode, in a public directory
    (etc / "apt" / "auth.conf.d").mkdir(parents=True)
    (etc / "apt" / "auth.conf.d" / "pro.conf").write_text(f"machine esm login bearer password {TOKEN}-apt\n")
    os.chmod(etc / "apt" / "auth.conf.d" / "pro.conf", 0o640)  # group-readable only
    private = etc / "kubernetes" / "pki"
    private.mkdir(parents=True)
    os.chmod(private, 0o700)  # a world-readable file in a directory only root may search
    (private / "ca.key").write_text(f"{TOKEN}-k8s\n")
    os.chmod(private / "ca.key", 0o644)
    return etc


async def _show(etc: Path, wd: Path, *, by_mode: bool) -> str:
    sb = Sandbox("bwrap", etc_view=EtcView(etc, (), by_mode=by_mode))
    wd.mkdir(exist_ok=True)
    r = await sb.run("cat /etc/hosts /etc/gitlab-runner/config.toml /etc/apt/auth.conf.d/pro.conf "
                     "/etc/kubernetes/pki/ca.key 2>&1; stat -c '%n %a %s' /etc/gitlab-runner/config.toml",
                     cwd=wd, writable=[wd], timeout_s=20, output_cap_bytes=64_000)
    return r.output


@pytest.mark.parametrize("name", ["runner", "apt", "k8s"])
async def test_private_etc_files_are_empty_in_the_sandbox(etc, host_tmp, name):
    live = await _show(etc, host_tmp / "wd", by_mode=False)
    assert f"{TOKEN}-{name}" in live, f"liveness: without the mode rule the {name} secret shows:\n{live}"
    shown = await _show(etc, host_tmp / "wd", by_mode=True)
    assert f"{TOKEN}-{name}" not in shown, shown
    assert "127.0.0.1 localhost" in shown  # what every user may read stays
    assert "/etc/gitlab-runner/config.toml 600 0" in shown  # there, empty, with its mode


async def test_the_real_etc_keeps_what_a_build_reads(host_tmp):
    """On this machine's /etc: name resolution, users, certificates still work with the mode rule."""
    wd = host_tmp / "wd"
    wd.mkdir()
    r = await Sandbox("bwrap").run("getent passwd root | cut -d: -f1; getent hosts localhost | head -1 | wc -l; "
                                   "ls /etc/ssl/certs | head -1 | wc -l; test -s /etc/passwd && echo passwd-ok",
                                   cwd=wd, writable=[wd], timeout_s=20, output_cap_bytes=64_000)
    assert r.output.split() == ["root", "1", "1", "passwd-ok"], r.output


# --- registry tokens inside toolchain roots outside the cockpit user's home ------------------------


async def test_toolchain_tokens_are_empty_wherever_the_toolchain_lives(host_tmp, monkeypatch):
    """Root runs the cockpit with toolchains in another user's home (and an nvm-style node whose global npmrc
    is `<prefix>/etc/npmrc`): the tokens there are hidden by name, not only under the cockpit's own $HOME."""
    from cockpit.host import sandbox as sandbox_mod

    cargo = host_tmp / "home" / "ci" / ".cargo"
    (cargo / "bin").mkdir(parents=True)
    (cargo / "credentials.toml").write_text(f'[registry]\ntoken = "{TOKEN}-cargo"\n')
    node = host_tmp / "home" / "ci" / ".nvm" / "versions" / "node" / "v20"
    (node / "etc").mkdir(parents=True)
    (node / "etc" / "npmrc").write_text(f"//registry.npmjs.org/:_authToken={TOKEN}-npm\n")
    wd = host_tmp / "wd"
    wd.mkdir()
    cmd = f"cat {cargo}/credentials.toml {node}/etc/npmrc; ls {cargo}"

    async def shown(scan: ToolchainView | None = None) -> str:
        r = await Sandbox("bwrap", toolchains=[cargo, node], toolchain_view=scan).run(
            cmd, cwd=wd, writable=[wd], timeout_s=20, output_cap_bytes=64_000)
        return r.output

    with monkeypatch.context() as m:
        m.setattr(sandbox_mod, "TOOLCHAIN_SECRETS", ())
        # the scan of the roots off too (its own tests: test_sandbox_secret_views.py)
        live = await shown(ToolchainView([str(cargo), str(node)], by_mode=False, names=frozenset()))
    assert f"{TOKEN}-cargo" in live and f"{TOKEN}-npm" in live, f"liveness: the tokens show without the names:\n{live}"
    out = await shown()
    assert TOKEN not in out, out
    assert "bin" in out  # the toolchain itself is still there


def test_system_toolchain_homes_are_covered():
    """The rust image's CARGO_HOME=/usr/local/cargo and node's global /usr/local/etc/npmrc: on the hidden list
    (shown through /usr, which is bound whole); and where this machine has one, it is empty in the sandbox."""
    hidden = {str(p) for p in Sandbox("bwrap").hidden}
    for path in ("/usr/local/cargo/credentials.toml", "/usr/local/cargo/credentials", "/usr/local/etc/npmrc",
                 "/usr/local/rustup/settings.xml", "/usr/local/lib/node_modules/npm/npmrc"):
        assert path in hidden, path


async def test_a_global_npmrc_this_machine_has_is_empty_inside(host_tmp):
    wd = host_tmp / "wd"
    wd.mkdir()
    r = await Sandbox("bwrap").run("for f in /usr/local/etc/npmrc /usr/local/cargo/credentials.toml; do "
                                   "if [ -e $f ]; then stat -c '%n %s' $f; fi; done; echo end",
                                   cwd=wd, writable=[wd], timeout_s=20, output_cap_bytes=64_000)
    sizes = [line.split() for line in r.output.splitlines() if line.startswith("/")]
    assert r.output.rstrip().endswith("end") and all(size == "0" for _, size in sizes), r.output


# --- a toolchain is the tool's own directory, never a home's shared one -----------------------------


def test_pnpm_outside_a_bin_shows_its_own_directory(host_tmp, monkeypatch):
    from cockpit.factory.products import detect_toolchains

    home = host_tmp / "u"
    pnpm = home / ".local" / "share" / "pnpm" / "pnpm"
    pnpm.parent.mkdir(parents=True)
    pnpm.write_text("#!/bin/sh\necho pnpm\n")
    pnpm.chmod(0o755)
    (home / ".local" / "share" / "fish").mkdir()
    (home / ".local" / "share" / "fish" / "fish_history").write_text(f"- cmd: export GITHUB_TOKEN={TOKEN}\n")
    monkeypatch.setenv("HOME", str(home))
    found = detect_toolchains(f"{pnpm} test", Sandbox("bwrap"))
    # the rule before: the program's grandparent, ~/.local/share, every keyring and history in it
    assert os.path.dirname(os.path.dirname(pnpm)) == str(home / ".local" / "share")
    assert found == [str(pnpm.parent)], found


@pytest.mark.parametrize("rel", ["", ".local", ".local/share", ".config", ".cache"])
def test_a_whole_home_is_refused_as_a_toolchain_in_factory_toml(host_tmp, monkeypatch, rel):
    from cockpit.config import ConfigError, load_factory

    home = host_tmp / "u"
    (home / rel).mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    toml = host_tmp / "factory.toml"
    value = f"~/{rel}" if rel else "~"
    toml.write_text(f'[factory]\nname = "f"\ntoolchains = ["{value}"]\n')
    with pytest.raises(ConfigError) as err:
        load_factory(toml)
    assert f"{toml}:3" in str(err.value) and "name the tool's own directory instead" in str(err.value)


class VanishAfterView(Sandbox):
    """The race made certain: a hidden file goes away after the view is read, before bwrap mounts over it."""

    victim: Path | None = None

    def _bwrap_argv(self, *args, **kwargs):
        argv = super()._bwrap_argv(*args, **kwargs)
        if self.victim is not None and self.victim.exists():
            self.victim.unlink()
            self.victim.parent.rmdir()
        return argv


async def test_a_hidden_file_that_vanishes_before_the_mount_costs_no_command(host_tmp, monkeypatch):
    """A toolchain's credentials file deleted between the view's reading and bwrap's start: bwrap cannot mount
    over it and stops before the command; the sandbox reads the view again and starts it once more."""
    cargo = host_tmp / "cargo"
    wd = host_tmp / "wd"
    wd.mkdir()

    from cockpit.host import sandbox as sandbox_mod

    monkeypatch.setattr(sandbox_mod, "TOOLCHAIN_SECRETS", ("sub/credentials.toml",))

    async def once(retry: bool) -> str:
        (cargo / "sub").mkdir(parents=True, exist_ok=True)
        (cargo / "sub" / "credentials.toml").write_text("token\n")
        sb = VanishAfterView("bwrap", toolchains=[cargo])
        sb.victim = cargo / "sub" / "credentials.toml"
        if not retry:
            monkeypatch.setattr(sb, "_hidden_path_vanished", lambda res, argv: False)
        r = await sb.run("echo ran", cwd=wd, writable=[wd], timeout_s=20, output_cap_bytes=64_000)
        return r.output

    live = await once(retry=False)
    assert live.startswith("bwrap: Can't"), f"liveness: without the retry the command never runs:\n{live}"
    assert await once(retry=True) == "ran\n"


# --- C-10: one command may not fill the disk with one file ------------------------------------------------


@pytest.mark.parametrize("limit", [None, 1_000_000], ids=["liveness_no_limit", "limited"])
async def test_a_file_written_in_the_sandbox_stops_at_the_limit(host_tmp, monkeypatch, limit):
    from cockpit.host import sandbox as sandbox_mod

    monkeypatch.setattr(sandbox_mod, "MAX_FILE_BYTES", limit)
    wd = host_tmp / "wd"
    wd.mkdir()
    r = await Sandbox("bwrap").run("head -c 3000000 /dev/zero > big; echo rc=$?; ulimit -H -f unlimited 2>&1 | "
                                   "head -1; stat -c %s big", cwd=wd, writable=[wd], timeout_s=20,
                                   output_cap_bytes=64_000)
    size = (wd / "big").stat().st_size
    if limit is None:
        assert size == 3_000_000, r.output  # liveness: nothing stops it
    else:
        assert size <= limit and "rc=0" not in r.output, r.output
        assert "cannot modify limit" in r.output, r.output  # and the command cannot lift it
