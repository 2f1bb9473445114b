"""`cockpit demo` in a real terminal: tmux runs it, the test sends keys and reads the pane, as a person would.

The demo blocks two tasks: T2 (ledger) at the tests gate, T10 (weather) at the gate's guard (a test was removed).
The test sends T2 back with the instruction the scripted builder needs, and approves T10 as a human override with
a note; both must then land, and the screen must say so. Textual draws on stderr: it is not redirected.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tui_tools import ensure_tool

REPO = Path(__file__).resolve().parents[1]


class Tmux:
    def __init__(self, tmux: str, name: str) -> None:
        self.tmux, self.name = tmux, name

    def run(self, *args: str) -> str:
        return subprocess.run([self.tmux, *args], capture_output=True, text=True, check=True).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name)

    def history(self) -> str:
        return self.run("capture-pane", "-p", "-S", "-200", "-t", self.name)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", self.name, "-l", text)

    def wait(self, what: str, check, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if check(text):
                return text
            assert not self.exited(), f"the cockpit exited while waiting for {what}:\n{self.history()}"
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}; the screen shows:\n{text}")

    def alive(self) -> bool:
        """The session exists (its pane stays after the cockpit exits, so a crash can be read)."""
        return subprocess.run([self.tmux, "has-session", "-t", self.name], capture_output=True).returncode == 0

    def exited(self) -> bool:
        return self.run("display-message", "-p", "-t", self.name, "#{pane_dead}").strip() == "1"


@pytest.fixture
def tmux():
    session = Tmux(ensure_tool("tmux", "tmux"), f"cockpit-test-{uuid.uuid4().hex[:8]}")
    yield session
    if session.alive():
        subprocess.run([session.tmux, "kill-session", "-t", session.name], capture_output=True)


def status(factory: Path) -> dict[str, dict]:
    out = subprocess.run([sys.executable, "-m", "cockpit", "status", "--json", "--factory", str(factory)],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    return {t["id"]: t for p in json.loads(out)["products"] for t in p["tasks"]}


def shows_state(screen: str, state: str) -> bool:
    """The task screen's head says the task is in `state` (the line under the title starts with it)."""
    return re.search(rf"^ {state}\b", screen, re.M) is not None


def open_task(tmux: Tmux, task_id: str, product: str) -> None:
    """ctrl+p, the task's name, enter: its screen."""
    tmux.keys("C-p")
    tmux.wait("the command palette", lambda s: "Search for commands" in s, 30)
    tmux.type(f"task {task_id} ")
    tmux.wait(f"{task_id} in the palette", lambda s: f"task {task_id} " in s, 30)
    tmux.keys("Enter")
    tmux.wait(f"the task screen of {task_id}", lambda s: f"{task_id} · {product} ·" in s, 30)


@pytest.mark.timeout(900)
def test_demo_under_tmux_send_back_and_approve_blocked_tasks_and_see_them_merge(tmux, tmp_path):
    demo = tmp_path / "demo"
    factory = demo / "factory.toml"
    tmux.run("new-session", "-d", "-s", tmux.name, "-x", "160", "-y", "48")
    tmux.run("set-option", "-t", tmux.name, "remain-on-exit", "on")
    # the shell writes the cockpit's exit status to a file: tmux 3.3 can mark the pane dead (its pty closed) before
    # it has reaped the process, and then #{pane_dead_status} stays empty
    exit_file = tmp_path / "exit-status"
    tmux.run("respawn-pane", "-k", "-t", tmux.name,
             f"cd {REPO} && {sys.executable} -m cockpit demo --dir {demo}; echo $? > {exit_file}")
    # the cockpit comes up on the demo, and the two tasks that need the human show up in the strip
    tmux.wait("the cockpit", lambda s: "Cockpit — demo" in s and "ledger" in s, 120)
    screen = tmux.wait("T2 and T10 in the Needs you strip",
                       lambda s: "T2 ledger · Round invoice totals to cents" in s and "T10 weather" in s, 600)
    assert "Needs you (2)" in screen or "Needs you (" in screen

    # T2: blocked at the tests gate after two rounds; b + the instruction its builder needs
    open_task(tmux, "T2", "ledger")
    assert shows_state(tmux.screen(), "blocked")
    tmux.keys("b")
    tmux.wait("the send-back prompt", lambda s: "Send T2 back" in s, 30)
    tmux.type("Use Decimal with ROUND_HALF_UP")
    tmux.keys("Enter")
    tmux.wait("T2 building again", lambda s: shows_state(s, "building") or shows_state(s, "checking"), 60)
    tmux.keys("Escape")

    # T10: the guard of the tests gate stopped it (a test was removed); a + a note lands it as a human override
    open_task(tmux, "T10", "weather")
    assert "tests removed" in tmux.screen()
    tmux.keys("a")
    tmux.wait("the override prompt", lambda s: "Approve T10 (human override)" in s, 30)
    tmux.type("The removed test was a duplicate")
    tmux.keys("Enter")
    # the task screen follows it through the merge queue until it lands
    tmux.wait("T10 merged", lambda s: "T10 · weather" in s and shows_state(s, "done"), 300)
    tmux.keys("Escape")
    tmux.wait("T2 merged", lambda s: status(factory)["T2"]["state"] == "done", 600)
    open_task(tmux, "T2", "ledger")
    tmux.wait("T2 shown done, every gate green", lambda s: shows_state(s, "done") and "every gate passed" in s, 60)
    tmux.keys("Escape")

    tasks = status(factory)
    for tid in ("T2", "T10"):
        assert tasks[tid]["state"] == "done" and tasks[tid]["merged_commit"], tasks[tid]
    assert tasks["T10"]["overrides"] == [{"commit": tasks["T10"]["commit"], "actor": "human:you",
                                          "note": "The removed test was a duplicate"}]
    # q quits, cleanly: the process ends with status 0
    tmux.keys("q")
    deadline = time.monotonic() + 60
    while not (exit_file.exists() and exit_file.read_text().endswith("\n")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert exit_file.exists(), f"the cockpit did not exit within 60 s of q:\n{tmux.history()}"
    assert exit_file.read_text().strip() == "0", f"the cockpit exited with status {exit_file.read_text().strip()}"
