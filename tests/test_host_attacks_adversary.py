"""Attacks found by reading only the README and docs/security.md as an adversary, after the
issue's suite passed: each one landed before its fix (the liveness run shows it landing against
the code as it was, rebuilt in the test), and no longer does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gitrepo import make_repo, run_git

from cockpit.factory.workspaces import Workspaces
from cockpit.host import sandbox
from cockpit.host.sandbox import CommandResult, Sandbox
from cockpit.host.toolchain_view import ToolchainView

SECRET = "sk-ant-adversary-0123456789"
CAP = 64_000


async def run(sb: Sandbox, command: str, wd: Path) -> CommandResult:
    r = await sb.run(command, cwd=wd, writable=[wd], timeout_s=20, output_cap_bytes=CAP)
    assert r.exit_code is not None, r.output
    return r


# --- 1. a toolchain directory holds the registry token ---------------------------------------
# README: "`product add` adds the one its test command needs, e.g. `~/.cargo`". ~/.cargo also
# holds credentials.toml, the crates.io token `cargo publish` uses; ~/.m2 settings.xml, ~/.gradle
# gradle.properties, ~/.gem/credentials, ~/.bundle/config likewise sit inside directories a
# toolchain entry shows whole.

TOOLCHAIN_SECRETS = {
    ".cargo": ("credentials.toml", "credentials"),
    ".m2": ("settings.xml", "settings-security.xml"),
    ".gradle": ("gradle.properties",),
    ".gem": ("credentials",),
    ".bundle": ("config",),
}


@pytest.fixture
def home(host_tmp, monkeypatch) -> Path:
    home = host_tmp / "home"
    for tool, files in TOOLCHAIN_SECRETS.items():
        (home / tool / "bin").mkdir(parents=True)
        for f in files:
            (home / tool / f).write_text(f"token = \"{SECRET}\"\n")
    monkeypatch.setenv("HOME", str(home))
    return home


async def test_a_toolchain_shows_its_tools_but_not_its_tokens(home, host_tmp, monkeypatch):
    wd = host_tmp / "wt"
    wd.mkdir()
    toolchains = [home / t for t in TOOLCHAIN_SECRETS]
    cmd = " ".join(f"cat {home / t / f} 2>/dev/null;" for t, fs in TOOLCHAIN_SECRETS.items() for f in fs)
    cmd += f" ls {home / '.cargo'}; echo end"
    # liveness: with the names hidden before this attack, every token prints
    monkeypatch.setattr(sandbox, "DEFAULT_HIDDEN_IN_HOME", sandbox.DEFAULT_HIDDEN_IN_HOME[:9])
    monkeypatch.setattr(sandbox, "TOOLCHAIN_SECRETS", ())  # the same names, inside every toolchain root
    # and the scan of every root switched off (by mode and by name at any depth: test_sandbox_secret_views.py)
    off = ToolchainView([str(t) for t in toolchains], by_mode=False, names=frozenset())
    shown = await run(Sandbox(toolchains=toolchains, toolchain_view=off), cmd, wd)
    assert shown.output.count(SECRET) == sum(len(fs) for fs in TOOLCHAIN_SECRETS.values()), shown.output
    monkeypatch.undo()
    monkeypatch.setenv("HOME", str(home))
    r = await run(Sandbox(toolchains=toolchains), cmd, wd)
    assert SECRET not in r.output and "bin" in r.output and r.output.rstrip().endswith("end"), r.output


# --- 2. a submodule's config in the bound .git -----------------------------------------------
# docs/security.md: the product's .git is bound read-only, "`config` replaced by a copy holding
# only the format version and extensions". Only the top one: a product with a submodule cloned
# over https with a token keeps that URL in .git/modules/<name>/config, bound as it is.


@pytest.fixture
async def with_submodule(host_tmp) -> dict[str, Path]:
    sub = make_repo(host_tmp / "subsrc", {"lib.py": "X = 1\n"})
    repo = make_repo(host_tmp / "repo")
    run_git(repo, "-c", "protocol.file.allow=always", "submodule", "-q", "add", str(sub), "vendor/lib")
    run_git(repo, "commit", "-qm", "vendor lib")
    # as a clone over https with a token leaves it; nested: the submodule's own submodule too
    run_git(repo / "vendor" / "lib", "remote", "set-url", "origin", f"https://me:{SECRET}@git.example.com/lib.git")
    run_git(repo, "config", "--file", str(repo / ".git" / "config.worktree"), "remote.fork.url",
            f"https://me:{SECRET}@git.example.com/fork.git")
    wt = await Workspaces(host_tmp / "worktrees").ensure("shop", repo, "main", "T1")
    common = Path(os.path.realpath(repo / ".git"))
    assert SECRET in (common / "modules" / "vendor" / "lib" / "config").read_text()  # staged
    return {"wt": wt, "common": common}


async def test_no_config_in_the_bound_git_dir_shows_a_remote_url(with_submodule, monkeypatch):
    wt, common = with_submodule["wt"], with_submodule["common"]
    cmd = (f"cat {common}/modules/vendor/lib/config {common}/config.worktree 2>&1; "
           f"grep -rs sk-ant {common} | head -3; git log --oneline -2; echo end")
    # liveness: with the common dir bound whole and only the top config reduced, as before, the token prints
    monkeypatch.setattr(sandbox, "_git_configs", lambda common: [os.path.join(common, "config")])
    monkeypatch.setattr(sandbox, "_entries", lambda git_dir, names, **kw: [git_dir])
    shown = await run(Sandbox(), cmd, wt)
    assert SECRET in shown.output and "vendor lib" in shown.output, shown.output
    monkeypatch.undo()
    r = await run(Sandbox(), cmd, wt)
    assert SECRET not in r.output and "vendor lib" in r.output and r.output.rstrip().endswith("end"), r.output


# --- 3. unmounting what hides a secret -------------------------------------------------------
# docs/security.md: "the cockpit's user (often root on a build box)"; the secrets inside what
# the sandbox shows are hidden by mounts over them. Run by root, bwrap keeps every capability
# inside the sandbox's own user namespace, and the mounts it made there are that namespace's:
# `umount` the one over a token file, then read the file.


async def test_a_command_cannot_unmount_what_hides_a_secret(home, host_tmp, with_submodule, monkeypatch):
    wd, common = with_submodule["wt"], with_submodule["common"]
    token = home / ".cargo" / "credentials.toml"
    # (since A-09's allow-list the common dir is not bound whole: under the reduced config.worktree lies only
    # the empty file bwrap made to mount it on, so even with capabilities its unmount shows no token)
    cmd = (f"umount {token}; umount {common}/config.worktree; umount {common}/config;"
           f" cat {token} {common}/config.worktree; grep -c Cap /proc/self/status; echo end")
    box = Sandbox(toolchains=[home / ".cargo"])
    plain = box._bwrap_argv

    def keeping_capabilities(*a, **kw):  # what bwrap does for root when not told otherwise
        argv = plain(*a, **kw)
        i = argv.index("--cap-drop")
        return argv[:i] + ["--cap-add", "ALL"] + argv[i + 2:]

    monkeypatch.setattr(box, "_bwrap_argv", keeping_capabilities)
    landed = await run(box, cmd, wd)
    assert landed.output.count(SECRET) == 1, landed.output  # liveness: the toolchain's token is read
    r = await run(Sandbox(toolchains=[home / ".cargo"]), cmd, wd)
    assert SECRET not in r.output and r.output.rstrip().endswith("end"), r.output
