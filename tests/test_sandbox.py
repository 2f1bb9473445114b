"""The sandbox under real bubblewrap: what an agent's code can see, touch and leave behind."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest
from gitrepo import make_repo

from cockpit.host.sandbox import CommandResult, Sandbox, SandboxUnavailable

CAP = 64_000


async def run(sb: Sandbox, command: str, wd: Path, **kw) -> CommandResult:
    kw.setdefault("timeout_s", 20)
    kw.setdefault("output_cap_bytes", CAP)
    return await sb.run(command, cwd=wd, writable=kw.pop("writable", [wd]), **kw)


@pytest.fixture
def wd(host_tmp):
    d = host_tmp / "worktree"
    d.mkdir()
    return d


def _pids_running(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains `marker`, seen from the host."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry))
    return found


async def test_environment_is_clean(wd, monkeypatch):
    """Secrets in the cockpit's environment never reach agent code."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-123")
    r = await run(Sandbox(), "env", wd, env={"EXTRA": "given"})
    assert r.ok, r.output
    assert "sk-ant-secret-123" not in r.output and "ANTHROPIC_API_KEY" not in r.output
    env = dict(line.split("=", 1) for line in r.output.splitlines() if "=" in line)
    assert env["HOME"] == "/tmp/home" and env["EXTRA"] == "given" and env["LANG"] == "C.UTF-8"
    assert env["PATH"].split(":")[0] == os.path.dirname(sys.executable)


async def test_off_mode_still_has_clean_env(wd, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-123")
    r = await run(Sandbox("off"), "env; test -d \"$HOME\" && echo home-ok", wd)
    assert r.ok, r.output
    assert "sk-ant-secret-123" not in r.output and "home-ok" in r.output


async def test_no_network(wd):
    """A port listening on the host's loopback is unreachable: the sandbox has its own network namespace."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED')"
        r = await run(Sandbox(), f'python -c "{code}"', wd)
        assert not r.ok and "CONNECTED" not in r.output
        r = await run(Sandbox(), "ls /sys/class/net 2>/dev/null; cat /proc/net/dev", wd)
        ifaces = [ln.split(":")[0].strip() for ln in r.output.splitlines() if ":" in ln]
        assert ifaces == ["lo"], r.output
        # Outside the sandbox the same code connects: the test would notice a broken setup.
        assert (await run(Sandbox("off"), f'python -c "{code}"', wd)).ok
    finally:
        server.close()


async def test_writes_only_inside_the_writable_dir(host_tmp, wd):
    repo = make_repo(host_tmp / "repo")
    outside = host_tmp / "factory.toml"
    outside.write_text("original\n")
    hook = repo / ".git" / "hooks" / "pre-commit"
    r = await run(
        Sandbox(),
        f"echo inside > ok.txt && echo pwned > {outside}; echo $?; echo 'rm -rf ~' > {hook}; echo $?",
        wd,
    )
    assert (wd / "ok.txt").read_text() == "inside\n"
    # the allow-list: neither path exists in the sandbox (or lands in its private tmpfs)
    assert "pwned" not in r.output, r.output
    assert outside.read_text() == "original\n"
    assert not hook.exists()


async def test_hidden_dir_and_file(host_tmp, wd, monkeypatch):
    """Explicitly hidden paths and the default credential files under $HOME are invisible."""
    secrets = host_tmp / "store"
    secrets.mkdir()
    (secrets / "cockpit.db").write_text("secret rows")
    toml = host_tmp / "factory.toml"
    toml.write_text("secret = 1\n")
    home = host_tmp / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    (home / ".netrc").write_text("machine x password hunter2")
    monkeypatch.setenv("HOME", str(home))
    sb = Sandbox(hidden=[secrets, toml])
    r = await run(
        sb,
        f"ls -A {secrets}; echo ---; cat {toml}; echo ---; ls -A {home}/.ssh; cat {home}/.netrc; echo end",
        wd,
    )
    assert r.ok, r.output
    # the allow-list: none of it exists in the sandbox (explicitly hidden or not)
    assert "secret" not in r.output and "PRIVATE" not in r.output and "hunter2" not in r.output, r.output
    assert r.output.count("No such file or directory") == 4 and r.output.rstrip().endswith("end"), r.output


async def test_run_is_hidden(wd):
    """Unix sockets (docker, D-Bus, ssh/gpg agents) ignore read-only mounts: /run is emptied."""
    r = await run(Sandbox(), "ls -A /run /var/run; echo end", wd)
    assert r.ok and r.output.split() == ["/run:", "/var/run:", "end"], r.output


async def test_worktree_under_hidden_dir_stays_writable(host_tmp):
    """Other worktrees are hidden by hiding their root; the task's own, beneath it, stays usable."""
    root = host_tmp / "worktrees"
    mine = root / "shop" / "T1"
    other = root / "shop" / "T2"
    mine.mkdir(parents=True)
    other.mkdir(parents=True)
    (other / "theirs.txt").write_text("other task")
    r = await run(Sandbox(hidden=[root]), f"echo mine > a.txt && cat {other}/theirs.txt; echo end", mine)
    assert r.ok and "other task" not in r.output and "end" in r.output, r.output
    assert (mine / "a.txt").read_text() == "mine\n"


async def test_timeout_kills(wd):
    t0 = time.monotonic()
    r = await run(Sandbox(), "echo started; sleep 100", wd, timeout_s=1)
    assert r.timed_out and not r.ok and r.exit_code is None
    assert "started" in r.output
    assert time.monotonic() - t0 < 5


async def test_output_flood_is_capped(wd):
    r = await run(Sandbox(), "yes | head -c 50000000; echo; echo THE-END", wd, output_cap_bytes=10_000)
    assert r.ok and r.truncated
    assert len(r.output.encode()) < 10_000 + 100
    assert "bytes cut ...]" in r.output
    assert r.output.startswith("y\ny\n") and r.output.rstrip().endswith("THE-END")


@pytest.mark.parametrize("mode", ["bwrap", "off"])
async def test_background_process_does_not_survive(wd, mode):
    marker = f"98{os.getpid()}.{'1' if mode == 'bwrap' else '2'}5"  # unique sleep duration
    r = await run(Sandbox(mode), f"sleep {marker} & echo started", wd)
    assert r.ok and "started" in r.output
    deadline = time.monotonic() + 0.5  # SIGKILL delivery is asynchronous; allow a moment
    while _pids_running(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _pids_running(marker) == []


async def test_exit_codes_and_stdin(wd):
    sb = Sandbox()
    r = await run(sb, "echo out; echo err >&2; exit 7", wd)
    assert r.exit_code == 7 and not r.ok and not r.timed_out
    assert "out" in r.output and "err" in r.output
    assert (await run(sb, "cat", wd, timeout_s=5)).ok  # stdin is /dev/null: no hang
    assert (await run(sb, "true", wd)).ok


async def test_missing_bwrap_is_refused_with_the_fix(wd, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on PATH
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        Sandbox.check("bwrap")
    with pytest.raises(SandboxUnavailable, match='sandbox = "off"'):
        await run(Sandbox(), "true", wd)
    Sandbox.check("off")  # opting out needs nothing


def test_check_passes_here():
    Sandbox.check("bwrap")


async def test_product_add_finds_the_toolchain_the_sandbox_must_show(host_tmp, monkeypatch):
    """cargo in ~/.cargo/bin: not on the sandbox's PATH nor in its view until named as a toolchain;
    a tool in ~/.local/bin brings that bin/ only, never the whole home."""
    from cockpit.factory.products import detect_toolchains

    home = host_tmp / "home"
    for rel in (".cargo/bin/cargo", ".local/bin/poetry"):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text("#!/bin/sh\necho toolchain-ran\n")
        (home / rel).chmod(0o755)
    (home / ".rustup").mkdir()
    (home / ".local" / "share" / "keyrings").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{home}/.cargo/bin:{home}/.local/bin:{os.environ['PATH']}")
    assert detect_toolchains("cargo test --offline") == [str(home / ".cargo"), str(home / ".rustup")]
    assert detect_toolchains("RUST_LOG=1 poetry run pytest") == [str(home / ".local" / "bin")]
    assert detect_toolchains("python -m pytest -q") == []  # the cockpit's own Python is shown already
    wd = host_tmp / "wd"
    wd.mkdir()
    r = await run(Sandbox(), "cargo test; echo end", wd)
    assert "toolchain-ran" not in r.output  # liveness: without the toolchain, no cargo in there
    r = await run(Sandbox(toolchains=detect_toolchains("cargo test")), "cargo test", wd)
    assert r.ok and "toolchain-ran" in r.output, r.output


async def test_a_credential_file_made_between_two_commands_is_hidden_from_the_second(host_tmp, wd, monkeypatch):
    """The mounts are built from a host view kept between commands (it costs a good part of a start);
    a file that appears under a hidden name must be hidden the very next command, not after a refresh."""
    toolchain = host_tmp / "toolchain"  # a toolchain the sandbox shows; one name in it is hidden
    toolchain.mkdir()
    (toolchain / "bin").mkdir()
    token = toolchain / "credentials.toml"

    async def read_token(sb: Sandbox) -> str:
        r = await run(sb, f"cat {token} 2>/dev/null; echo end", wd)
        assert r.ok, r.output
        return r.output

    sb = Sandbox(hidden=[token], toolchains=[toolchain])
    assert "TOKEN" not in await read_token(sb)  # the view is read while the file does not exist yet
    token.write_text("TOKEN=hunter2\n")
    assert "hunter2" not in await read_token(sb)

    # liveness: a view kept regardless of what changed shows the file that appeared after it was read
    token.unlink()
    stale = Sandbox(hidden=[token], toolchains=[toolchain])
    monkeypatch.setattr(stale, "_view_key", lambda: ())
    assert "TOKEN" not in await read_token(stale)
    token.write_text("TOKEN=hunter2\n")
    assert "hunter2" in await read_token(stale)
