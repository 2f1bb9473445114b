"""System tools the terminal and browser tests drive (tmux, Debian's chromium): installed on first use when the
machine can (root with apt-get, as CI is), so a fresh machine runs these tests instead of skipping them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time


def ensure_tool(command: str, package: str) -> str:
    """The path of `command`, installing Debian's `package` first if it is missing; fails (never skips) if it cannot."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=True)
            subprocess.run(install, env=env, capture_output=True, check=True)
    found = shutil.which(command)
    assert found, f"{command} is missing and could not be installed: run `apt-get install {package}` (make test does)"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def served_address(stream, timeout: float = 60) -> str:
    """The address `cockpit serve` prints (it carries the token), read from its stderr `stream`."""
    import re
    import select

    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            line = stream.readline()
            if not line:
                break
            seen += line
            found = re.search(rb"(http://127\.0\.0\.1:\d+/\?token=[\w-]+)", line)
            if found:
                return found.group(1).decode()
    raise AssertionError(f"cockpit serve printed no address with a token: {seen[-2000:]!r}")
