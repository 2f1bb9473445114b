"""Secrets in what the sandbox shows of the host: /etc (A-01), toolchain roots (A-07), a home's shared dirs (A-05).

Each attack is a real `cat` (or socket connect) in a real bubblewrap sandbox over real files. Liveness: the same
view with the defence switched off shows the secret; with it on, the secret is gone and what a build needs stays.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from pathlib import Path

import pytest

from cockpit.config import ConfigError, load_factory, too_broad_for_toolchain
from cockpit.host import sandbox as sandbox_mod
from cockpit.host import toolchain_view
from cockpit.host.etc_view import EtcView
from cockpit.host.sandbox import HIDDEN_IN_ETC, Sandbox
from cockpit.host.toolchain_view import ToolchainView

TOKEN = "tok-SECRET-VIEW-0123456789"
NOTHING = frozenset[str]()


async def _run(sb: Sandbox, wd: Path, command: str) -> str:
    wd.mkdir(exist_ok=True)
    r = await sb.run(command, cwd=wd, writable=[wd], timeout_s=30, output_cap_bytes=64_000)
    return r.output


# --- A-01: /etc ------------------------------------------------------------------------------------------


@pytest.fixture
def etc(host_tmp: Path) -> Path:
    etc = host_tmp / "etc"
    etc.mkdir(mode=0o755)
    os.chmod(etc, 0o755)
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    # a TLS key kept 0600 deep under a 0755 tree (letsencrypt's archive/)
    live = etc / "letsencrypt" / "archive" / "example.org"
    live.mkdir(parents=True)
    (live / "privkey1.pem").write_text(f"-----BEGIN PRIVATE KEY----- {TOKEN}-tls\n")
    os.chmod(live / "privkey1.pem", 0o600)
    # a systemd drop-in holding Environment=TOKEN=..., 0640 (group root only)
    dropin = etc / "systemd" / "system" / "runner.service.d"
    dropin.mkdir(parents=True)
    (dropin / "override.conf").write_text(f"[Service]\nEnvironment=RUNNER_TOKEN={TOKEN}-dropin\n")
    os.chmod(dropin / "override.conf", 0o640)
    # a world-readable link and a hard link with a harmless name, both to a 0600 file
    (etc / "buildkite-agent").mkdir()
    (etc / "buildkite-agent" / "buildkite-agent.cfg").write_text(f'token="{TOKEN}-link"\n')
    os.chmod(etc / "buildkite-agent" / "buildkite-agent.cfg", 0o600)
    os.symlink("buildkite-agent/buildkite-agent.cfg", etc / "motd")
    os.link(etc / "buildkite-agent" / "buildkite-agent.cfg", etc / "issue")
    # a world-readable npm config with a token: private only by its name (the deny-list, the second layer)
    (etc / "npmrc").write_text(f"//registry.npmjs.org/:_authToken={TOKEN}-npmrc\n")
    os.chmod(etc / "npmrc", 0o644)
    return etc


ETC_CMD = ("cat /etc/hosts /etc/letsencrypt/archive/example.org/privkey1.pem "
           "/etc/systemd/system/runner.service.d/override.conf /etc/motd /etc/issue /etc/npmrc 2>&1")


@pytest.mark.parametrize("what", ["tls", "dropin", "link"])
async def test_a_private_etc_file_is_empty_whatever_its_path(etc, host_tmp, what):
    live = await _run(Sandbox("bwrap", etc_view=EtcView(etc, (), by_mode=False)), host_tmp / "wd", ETC_CMD)
    assert f"{TOKEN}-{what}" in live, f"liveness: without the mode rule the {what} secret shows:\n{live}"
    out = await _run(Sandbox("bwrap", etc_view=EtcView(etc, ())), host_tmp / "wd", ETC_CMD)
    assert f"{TOKEN}-{what}" not in out, out
    assert "127.0.0.1 localhost" in out


async def test_a_world_readable_etc_secret_is_emptied_by_its_name(etc, host_tmp):
    """The deny-list stays as a second layer: a 0644 npmrc passes the mode rule, its name does not."""
    live = await _run(Sandbox("bwrap", etc_view=EtcView(etc, ())), host_tmp / "wd", ETC_CMD)
    assert f"{TOKEN}-npmrc" in live, f"liveness: the mode rule alone lets a 0644 npmrc through:\n{live}"
    hidden = [str(etc / Path(p).relative_to("/etc")) for p in HIDDEN_IN_ETC]
    out = await _run(Sandbox("bwrap", etc_view=EtcView(etc, hidden)), host_tmp / "wd", ETC_CMD)
    assert f"{TOKEN}-npmrc" not in out and "127.0.0.1 localhost" in out, out


async def test_what_a_build_reads_from_the_real_etc_still_reads(host_tmp):
    """passwd, group, hosts, resolv.conf, nsswitch, certificates, ld.so.cache, alternatives, localtime: the
    ones this machine has world-readable keep their content in the copy."""
    names = ["passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "ld.so.cache", "localtime",
             "ssl/certs/ca-certificates.crt"]
    present = [n for n in names if os.path.isfile(f"/etc/{n}") and os.stat(f"/etc/{n}").st_size
               and os.stat(f"/etc/{n}").st_mode & 0o004]
    assert {"passwd", "group", "hosts"} <= set(present)
    cmd = "; ".join(f"test -s /etc/{n} && echo ok:{n}" for n in present)
    cmd += "; ls /etc/alternatives | head -1 | wc -l; getent passwd root | cut -d: -f1"
    out = await _run(Sandbox("bwrap"), host_tmp / "wd", cmd)
    for n in present:
        assert f"ok:{n}" in out, out
    alternatives = os.path.isdir("/etc/alternatives") and bool(os.listdir("/etc/alternatives"))
    assert out.split()[-2:] == ["1" if alternatives else "0", "root"], out


# --- toolchain roots -----------------------------------------------------------------------------


@pytest.fixture
def toolchain(host_tmp: Path) -> Path:
    """Another user's toolchain (root runs the cockpit with it): tokens at depth and under other names."""
    root = host_tmp / "home-ci" / ".cargo"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "cargo").write_text("#!/bin/sh\necho cargo stand-in\n")
    os.chmod(root / "bin" / "cargo", 0o755)
    # private by its mode, named like nothing on any list
    (root / "registry" / "index").mkdir(parents=True)
    (root / "registry" / "index" / "tokens.json").write_text(f'{{"token": "{TOKEN}-mode"}}\n')
    os.chmod(root / "registry" / "index" / "tokens.json", 0o600)
    # world-readable, named like a token store, deep (an nvm node's global npmrc under another prefix)
    (root / "versions" / "node" / "v20" / "etc").mkdir(parents=True)
    (root / "versions" / "node" / "v20" / "etc" / "npmrc").write_text(f"//r/:_authToken={TOKEN}-name\n")
    # a directory only its owner may search, with a world-readable file in it
    (root / "private").mkdir(mode=0o700)
    os.chmod(root / "private", 0o700)
    (root / "private" / "session").write_text(f"{TOKEN}-dir\n")
    return root


TC_CMD = ("cat {r}/registry/index/tokens.json {r}/versions/node/v20/etc/npmrc {r}/private/session 2>&1; "
          "{r}/bin/cargo")


@pytest.mark.parametrize("what", ["mode", "name", "dir"])
async def test_a_toolchain_secret_is_hidden_wherever_it_lies_in_the_root(toolchain, host_tmp, what, monkeypatch):
    cmd = TC_CMD.format(r=toolchain)
    monkeypatch.setattr(sandbox_mod, "TOOLCHAIN_SECRETS", ())  # the old name list at the root's top: not the defence
    off = ToolchainView([str(toolchain)], by_mode=False, names=NOTHING)
    live = await _run(Sandbox("bwrap", toolchains=[toolchain], toolchain_view=off), host_tmp / "wd", cmd)
    assert f"{TOKEN}-{what}" in live, f"liveness: without the scan the {what} secret shows:\n{live}"
    on = ToolchainView([str(toolchain)])
    out = await _run(Sandbox("bwrap", toolchains=[toolchain], toolchain_view=on), host_tmp / "wd", cmd)
    assert TOKEN not in out, out
    assert "cargo stand-in" in out  # the toolchain still runs


async def test_a_socket_in_a_toolchain_root_does_not_reach_the_host(host_tmp):
    """A unix socket ignores read-only mounts and the network namespace: one in a shown root (an sccache or
    language server's) would let a command talk to a host daemon. It is an empty file in there."""
    root = host_tmp / "tc"
    root.mkdir()
    path = root / "server.sock"
    got: list[bytes] = []
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)
    srv.settimeout(30)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                got.append(conn.recv(100))

    threading.Thread(target=serve, daemon=True).start()
    py = (f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(path)!r}); s.sendall(b'{TOKEN}')")
    cmd = f"python3 -c \"{py}\" 2>&1 | tail -1"
    try:
        off = ToolchainView([str(root)], by_mode=False, names=NOTHING)
        await _run(Sandbox("bwrap", toolchains=[root], toolchain_view=off), host_tmp / "wd", cmd)
        for _ in range(300):  # the server thread records what it got
            if got:
                break
            await asyncio.sleep(0.01)
        assert got == [TOKEN.encode()], "liveness: without the scan the command reaches the host's socket"
        out = await _run(Sandbox("bwrap", toolchains=[root], toolchain_view=ToolchainView([str(root)])),
                         host_tmp / "wd", cmd)
        # an empty read-only file where the socket was: connect() is refused, nothing reaches the host
        assert "PermissionError" in out or "ConnectionRefusedError" in out, out
        assert got == [TOKEN.encode()]  # nothing more arrived
    finally:
        srv.close()


async def test_a_secret_made_after_the_scan_is_hidden_from_the_next_command(toolchain, host_tmp):
    """The scan is kept while inotify reports no change: a token written between two commands is hidden
    from the second. Liveness: the same view with its watch gone (as where none can be set) shows it."""
    late = toolchain / "registry" / "index" / "late"
    cmd = f"cat {late}/token 2>&1"

    async def second_sees(view: ToolchainView, *, watched: bool) -> str:
        sb = Sandbox("bwrap", toolchains=[toolchain], toolchain_view=view)
        await _run(sb, host_tmp / "wd", "true")
        if not watched:
            view.unavailable = "watch switched off by the test"
        late.mkdir(exist_ok=True)
        (late / "token").write_text(f"{TOKEN}-late\n")
        os.chmod(late / "token", 0o600)
        try:
            return await _run(sb, host_tmp / "wd", cmd)
        finally:
            (late / "token").unlink()

    live = await second_sees(ToolchainView([str(toolchain)]), watched=False)
    assert f"{TOKEN}-late" in live, f"liveness: a stale scan lets the new token through:\n{live}"
    out = await second_sees(ToolchainView([str(toolchain)]), watched=True)
    assert f"{TOKEN}-late" not in out, out


async def test_a_toolchain_root_that_appears_between_two_commands_is_scanned_before_it_shows(host_tmp, monkeypatch):
    """The view is the shown roots' (no test view injected): a toolchain directory made after the first command
    (`rustup` installing while the factory runs) is scanned before the second command sees it. Liveness: with
    that root left out of the scan, its token shows."""
    root = host_tmp / "later" / ".cargo"

    async def second_sees() -> str:
        sb = Sandbox("bwrap", toolchains=[root])
        await _run(sb, host_tmp / "wd", "true")
        (root / "bin").mkdir(parents=True)
        (root / "registry.token").write_text(f"{TOKEN}-appeared\n")
        os.chmod(root / "registry.token", 0o600)
        try:
            return await _run(sb, host_tmp / "wd", f"ls {root}; cat {root}/registry.token 2>&1")
        finally:
            import shutil

            shutil.rmtree(root)

    with monkeypatch.context() as m:
        scanned = Sandbox.toolchain_roots
        m.setattr(Sandbox, "toolchain_roots", lambda self, visible=None: [
            r for r in scanned(self, visible) if r != str(root)])
        live = await second_sees()
    assert f"{TOKEN}-appeared" in live, f"liveness: an unscanned root shows its token:\n{live}"
    out = await second_sees()
    assert f"{TOKEN}-appeared" not in out and "bin" in out, out


async def test_a_root_too_private_to_hide_file_by_file_is_not_shown(host_tmp, monkeypatch):
    root = host_tmp / "umask077"
    root.mkdir()
    for i in range(toolchain_view.MAX_HIDDEN + 1):
        (root / f"f{i}").write_text(f"{TOKEN}-{i}\n")
        os.chmod(root / f"f{i}", 0o600)
    cmd = f"cat {root}/f0 2>&1"
    off = ToolchainView([str(root)], by_mode=False, names=NOTHING)
    live = await _run(Sandbox("bwrap", toolchains=[root], toolchain_view=off), host_tmp / "wd", cmd)
    assert f"{TOKEN}-0" in live, live
    sb = Sandbox("bwrap", toolchains=[root], toolchain_view=ToolchainView([str(root)]))
    out = await _run(sb, host_tmp / "wd", cmd)
    assert TOKEN not in out, out
    assert str(root) in " ".join(sb.exposure()) and "more than 64 private entries" in " ".join(sb.exposure())


def test_every_shown_root_but_the_system_dirs_is_scanned(host_tmp):
    """/usr/local (the rust image's CARGO_HOME, node's global npmrc), each toolchain, the cockpit's Python."""
    import sys

    tc = host_tmp / "tc"
    tc.mkdir()
    roots = Sandbox("bwrap", toolchains=[tc]).toolchain_roots()
    assert str(tc) in roots and "/usr/local" in roots and os.path.realpath(sys.prefix) in roots
    assert not {"/usr", "/etc", "/bin"} & set(roots)


# --- a home's shared directories -------------------------------------------------------------------


@pytest.fixture
def home(host_tmp: Path, monkeypatch) -> Path:
    home = host_tmp / "u"
    share = home / ".local" / "share"
    (share / "uv" / "credentials").mkdir(parents=True)
    (share / "uv" / "credentials" / "credentials.toml").write_text(f'password = "{TOKEN}-uv"\n')
    (share / "keyrings").mkdir()
    (share / "keyrings" / "login.keyring").write_text(f"{TOKEN}-keyring\n")
    (share / "fish").mkdir()
    (share / "fish" / "fish_history").write_text(f"- cmd: export GITHUB_TOKEN={TOKEN}-history\n")
    (home / ".config").mkdir()
    (home / ".cache").mkdir()
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.mark.parametrize("what", ["uv", "keyring", "history"])
async def test_local_share_secrets_are_hidden_by_name_even_if_shown(home, host_tmp, monkeypatch, what):
    """Second layer: were ~/.local/share shown anyway (factory.toml refuses it), its usual secrets (0644 here:
    the mode rule does not catch them) are hidden by name."""
    share = home / ".local" / "share"
    cmd = f"cat {share}/uv/credentials/credentials.toml {share}/keyrings/login.keyring {share}/fish/fish_history 2>&1"
    off = ToolchainView([str(share)], by_mode=False, names=NOTHING)
    with monkeypatch.context() as m:
        m.setattr(sandbox_mod, "DEFAULT_HIDDEN_IN_HOME", ())
        live = await _run(Sandbox("bwrap", toolchains=[share], toolchain_view=off), host_tmp / "wd", cmd)
    assert f"{TOKEN}-{what}" in live, f"liveness: without the names the {what} secret shows:\n{live}"
    out = await _run(Sandbox("bwrap", toolchains=[share], toolchain_view=off), host_tmp / "wd", cmd)
    assert f"{TOKEN}-{what}" not in out, out


@pytest.mark.parametrize("entry", ["{home}/.local/share/", "{home}/.local/share/pnpm/..", "{link}", "{parent}",
                                   "{xdg}", "{home}/.local/state"])
def test_factory_toml_refuses_a_home_or_its_shared_dirs_with_file_and_line(home, host_tmp, monkeypatch, entry):
    """Spellings an attacker (or a hurried user) tries: a trailing slash, a `..`, a symlink to the home, the
    directory holding the home, a custom XDG_DATA_HOME. The error names the file, the line and the fix."""
    import cockpit.config as config_mod

    link = host_tmp / "looks-like-a-toolchain"
    link.symlink_to(home)
    xdg = host_tmp / "data"
    xdg.mkdir()
    if entry == "{xdg}":
        monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    value = entry.format(home=home, link=link, parent=home.parent, xdg=xdg)
    toml = host_tmp / "factory.toml"
    toml.write_text(f'[factory]\nname = "f"\n\ntoolchains = ["{home}/.cargo", "{value}"]\n')
    with monkeypatch.context() as m:
        m.setattr(config_mod, "too_broad_for_toolchain", lambda path: None)
        assert value in load_factory(toml).factory.toolchains  # liveness: without the check it loads
    with pytest.raises(ConfigError) as err:
        load_factory(toml)
    msg = str(err.value)
    assert f"{toml}:4" in msg and "toolchains" in msg and "name the tool's own directory instead" in msg, msg
    (home / ".cargo").mkdir(exist_ok=True)
    toml.write_text(f'[factory]\nname = "f"\n\ntoolchains = ["{home}/.cargo", "{home}/.local/share/pnpm"]\n')
    assert load_factory(toml).factory.toolchains  # the tool's own directories load


@pytest.mark.parametrize(("program", "expect"), [
    (".local/share/pnpm/pnpm", ".local/share/pnpm"),  # outside a bin/: its own directory
    (".local/share/tool", None),  # directly in ~/.local/share: nothing, never the shared dir
    ("bin/tool", "bin"),  # ~/bin/tool: its bin/, never the home
    ("opt/node-v20/bin/node", "opt/node-v20"),  # <root>/bin/tool: the install root
])
def test_product_add_proposes_only_the_programs_own_install_root(home, program, expect):
    from cockpit.factory.products import detect_toolchains

    exe = home / program
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text("#!/bin/sh\necho tool\n")
    exe.chmod(0o755)
    grandparent = os.path.dirname(os.path.dirname(exe))
    if expect is None:
        # liveness: the rule before took the grandparent, i.e. the home itself here
        assert too_broad_for_toolchain(grandparent) or too_broad_for_toolchain(os.path.dirname(exe))
    refused: list[tuple[str, str]] = []
    found = detect_toolchains(f"{exe} test", Sandbox("bwrap"), refused)
    assert found == ([] if expect is None else [str(home / expect)]), found
    # what was not proposed is said, with why (product add prints it)
    assert [r[0] for r in refused] == ([os.path.dirname(exe)] if expect is None else []), refused
    assert not any(too_broad_for_toolchain(f) for f in found)
