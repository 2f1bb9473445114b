"""`cockpit demo` in real terminals of three sizes: tmux runs it, the test sends keys and reads the pane, as a person
would, following the README's demo story.

The demo blocks two tasks: T2 (ledger) at the tests gate, T10 (weather) at the gate's guard (a test was removed).
At 80x24, 120x36 and 160x48 at once (three demos side by side), the test sends T2 back with the instruction the
scripted builder needs, and approves T10 as a human override with a note whenever T10 blocks (before or after the
Fahrenheit task lands: then the override meets a merge conflict, a builder resolves it and the override carries);
both must land. On every size it reads each product's counts on screen, sees the Needs you strip, finds a blocked
task's row with `n`, and sees a footer cut at a key.

The scripted model streams without the on-screen pace (`--pace 0`): the same story, told faster.
Every wait is on a fact: the store's (its SQLite file, read-only) or the screen's; the time limits are ceilings for
a loaded machine, never the reason a step goes on. Textual draws on stderr: it is not redirected.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cockpit.domain.tasks import Task
from tui_tools import ensure_tool

REPO = Path(__file__).resolve().parents[1]
SIZES = [(80, 24), (120, 36), (160, 48)]
NOTE = "The removed test was a duplicate"


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

    def wait(self, what: str, check, ceiling: float = 120.0) -> str:
        deadline = time.monotonic() + ceiling
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if check(text):
                return text
            assert not self.exited(), f"[{self.name}] the cockpit exited while waiting for {what}:\n{self.history()}"
            time.sleep(0.3)
        raise AssertionError(f"[{self.name}] no {what} within {ceiling:g} s; the screen shows:\n{text}")

    def alive(self) -> bool:
        """The session exists (its pane stays after the cockpit exits, so a crash can be read)."""
        return subprocess.run([self.tmux, "has-session", "-t", self.name], capture_output=True).returncode == 0

    def exited(self) -> bool:
        return self.run("display-message", "-p", "-t", self.name, "#{pane_dead}").strip() == "1"


class Demo:
    """One `cockpit demo` in a tmux session of one size, and its store (read-only: the cockpit is its writer)."""

    def __init__(self, tmux: Tmux, root: Path, size: tuple[int, int]) -> None:
        self.tmux, self.root, self.size = tmux, root, size
        self.dir = root / "demo"
        self.exit_file = root / "exit-status"

    def start(self) -> None:
        w, h = self.size
        self.tmux.run("new-session", "-d", "-s", self.tmux.name, "-x", str(w), "-y", str(h))
        # the size stays what the test asked for, whatever clients attach or the server's default-size says
        self.tmux.run("set-option", "-t", self.tmux.name, "window-size", "manual")
        self.tmux.run("resize-window", "-t", self.tmux.name, "-x", str(w), "-y", str(h))
        self.tmux.run("set-option", "-t", self.tmux.name, "remain-on-exit", "on")
        # the shell writes the cockpit's exit status to a file: tmux 3.3 can mark the pane dead (its pty closed)
        # before it has reaped the process, and then #{pane_dead_status} stays empty
        self.tmux.run("respawn-pane", "-k", "-t", self.tmux.name,
                      f"cd {REPO} && {sys.executable} -m cockpit demo --dir {self.dir} --pace 0; "
                      f"echo $? > {self.exit_file}")

    def tasks(self) -> dict[str, Task]:
        """Every task as the store holds it now (its projection table; WAL lets a reader in beside the writer)."""
        db = self.dir / "memory" / "cockpit.db"
        if not db.exists():
            return {}
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
                rows = con.execute("SELECT body FROM tasks").fetchall()
        except sqlite3.OperationalError:  # the schema is not written yet
            return {}
        return {t.id: t for t in (Task.model_validate_json(body) for (body,) in rows)}

    def until(self, what: str, check, ceiling: float) -> dict[str, Task]:
        deadline = time.monotonic() + ceiling
        while time.monotonic() < deadline:
            tasks = self.tasks()
            if check(tasks):
                return tasks
            assert not self.tmux.exited(), f"[{self.size}] the cockpit exited waiting for {what}:\n{self.tmux.history()}"
            time.sleep(0.4)
        raise AssertionError(f"[{self.size}] the store never showed {what} within {ceiling:g} s: "
                             f"{ {k: t.state.value for k, t in self.tasks().items()} }\n{self.tmux.screen()}")


def shows_state(screen: str, state: str) -> bool:
    """The task screen's head says the task is in `state` (the line under the title starts with it)."""
    return re.search(rf"^ {state}\b", screen, re.M) is not None


def open_task(tmux: Tmux, task_id: str, product: str) -> None:
    """ctrl+p, the task's name, enter: its screen."""
    tmux.keys("C-p")
    tmux.wait("command palette", lambda s: "Search for commands" in s, 30)
    tmux.type(f"task {task_id} ")
    tmux.wait(f"{task_id} in the palette", lambda s: f"task {task_id} " in s, 30)
    tmux.keys("Enter")
    tmux.wait(f"task screen of {task_id}", lambda s: f"{task_id} · {product} ·" in s, 30)


def on_main(tmux: Tmux) -> str:
    """Back to the main screen (esc until it shows: a key sent as a prompt closes may land on it)."""
    for _ in range(5):
        screen = tmux.screen()
        if "Cockpit — demo" in screen and "Needs you" in screen:
            return screen
        tmux.keys("Escape")
        try:
            return tmux.wait("main screen", lambda s: "Cockpit — demo" in s and "Needs you" in s, 3)
        except AssertionError:
            continue
    return tmux.wait("main screen", lambda s: "Cockpit — demo" in s and "Needs you" in s, 30)


def counts_shown(screen: str, tasks: dict[str, Task]) -> list[str]:
    """Products whose `name · N tasks` is not on screen (each pane's title, or its folded line)."""
    per: dict[str, int] = {}
    for t in tasks.values():
        per[t.product] = per.get(t.product, 0) + 1
    return [f"{p} · {n} task{'s' if n != 1 else ''}" for p, n in per.items()
            if f"{p} · {n} task{'s' if n != 1 else ''}" not in screen]


def check_main_screen(demo: Demo) -> None:
    """Every product with its counts, the strip, and a footer that ends at a whole key."""
    tmux = demo.tmux
    screen = tmux.wait("every product's counts", lambda s: not counts_shown(s, demo.tasks()), 20)
    assert "Needs you" in screen, screen

    def footer(s: str) -> str:
        return s.rstrip("\n").splitlines()[-1].rstrip()

    # the footer is cut once laid out (a focus change recomposes it: one frame may show every key)
    screen = tmux.wait("a footer cut at a whole key",
                       lambda s: footer(s).endswith("▏^p Find") and footer(s).count("▏") == 1, 10)
    assert not counts_shown(screen, demo.tasks()), screen


def find_with_n(demo: Demo, task: Task) -> None:
    """`n` until the blocked task's row (in its pane, not only the strip) is on screen."""
    row = re.compile(rf"│ *{task.id}\s+{re.escape(task.title[:20])}.*blocked")
    for _ in range(4):
        demo.tmux.keys("n")
        time.sleep(0.3)
        if row.search(demo.tmux.wait("the row after n", lambda s: "Cockpit — demo" in s, 10)):
            return
    raise AssertionError(f"[{demo.size}] n never brought {task.id}'s row into view:\n{demo.tmux.screen()}")


def walk(demo: Demo) -> dict[str, Task]:
    tmux = demo.tmux
    demo.start()
    tmux.wait("the cockpit", lambda s: "Cockpit — demo" in s, 120)
    width = tmux.run("display-message", "-p", "-t", tmux.name, "#{window_width}x#{window_height}").strip()
    assert width == f"{demo.size[0]}x{demo.size[1]}", width
    started = time.monotonic()
    sent_back = overrides = 0
    found_with_n = False
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        tasks = demo.tasks()
        t2, t10 = tasks.get("T2"), tasks.get("T10")
        if t2 is not None and t10 is not None and t2.state.value == t10.state.value == "done":
            break
        if t2 is not None and t2.state.value == "blocked":
            assert sent_back == 0, f"[{demo.size}] T2 blocked again after its builder was told what to do: " \
                                   f"{t2.blocked_by} {t2.block_detail[-600:]}"
            # the strip shows it, then its screen, b and the instruction its builder needs
            on_main(tmux)
            tmux.wait("T2 in the Needs you strip", lambda s: "T2 ledger · Round invoice totals" in s, 30)
            if not found_with_n:
                check_main_screen(demo)
                find_with_n(demo, t2)
                found_with_n = True
            open_task(tmux, "T2", "ledger")
            assert shows_state(tmux.screen(), "blocked")
            tmux.keys("b")
            tmux.wait("the send-back prompt", lambda s: "Send T2 back" in s, 30)
            tmux.type("Use Decimal with ROUND_HALF_UP")
            tmux.keys("Enter")
            demo.until("T2 sent back", lambda ts: ts["T2"].state.value != "blocked", 30)
            sent_back += 1
            continue
        if t10 is not None and t10.state.value == "blocked":
            assert overrides < 3, f"[{demo.size}] T10 keeps blocking: {t10.blocked_by} {t10.block_detail[-600:]}"
            on_main(tmux)
            open_task(tmux, "T10", "weather")
            screen = tmux.screen()
            assert "tests removed" in screen, screen
            # the Gates tab names the file that lost a test
            assert "tests/test_units.py: 2 -> 1" in screen, screen
            tmux.keys("a")
            tmux.wait("the override prompt", lambda s: "Approve T10 (human override)" in s, 30)
            tmux.type(NOTE)
            tmux.keys("Enter")
            demo.until("T10 overridden", lambda ts: ts["T10"].state.value != "blocked", 30)
            overrides += 1
            continue
        time.sleep(0.4)
    print(f"[{demo.size}] T2 and T10 done after {time.monotonic() - started:.0f} s")
    tasks = demo.until("T2 and T10 done", lambda ts: ts["T2"].state.value == ts["T10"].state.value == "done", 5)
    assert sent_back == 1 and overrides >= 1, (sent_back, overrides)

    # what the screen says once both landed
    on_main(tmux)
    open_task(tmux, "T2", "ledger")
    tmux.wait("T2 shown done, every gate green", lambda s: shows_state(s, "done") and "every gate passed" in s, 30)
    on_main(tmux)
    open_task(tmux, "T10", "weather")
    tmux.wait("T10 shown done with the override", lambda s: shows_state(s, "done") and NOTE in s, 30)
    on_main(tmux)
    check_main_screen(demo)

    # q quits, cleanly: the process ends with status 0
    tmux.keys("q")
    deadline = time.monotonic() + 60
    while not (demo.exit_file.exists() and demo.exit_file.read_text().endswith("\n")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert demo.exit_file.exists(), f"[{demo.size}] the cockpit did not exit within 60 s of q:\n{tmux.history()}"
    assert demo.exit_file.read_text().strip() == "0", f"[{demo.size}] exit status {demo.exit_file.read_text()}"
    return tasks


@pytest.fixture
def demos(tmp_path):
    tmux = ensure_tool("tmux", "tmux")
    made = []
    for w, h in SIZES:
        root = tmp_path / f"{w}x{h}"
        root.mkdir()
        made.append(Demo(Tmux(tmux, f"cockpit-test-{w}x{h}-{uuid.uuid4().hex[:6]}"), root, (w, h)))
    yield made
    for demo in made:
        if demo.tmux.alive():
            subprocess.run([tmux, "kill-session", "-t", demo.tmux.name], capture_output=True)


@pytest.mark.timeout(900)
def test_demo_story_at_80x24_120x36_and_160x48(demos):
    with ThreadPoolExecutor(len(demos)) as pool:
        results = list(pool.map(walk, demos))
    for demo, tasks in zip(demos, results, strict=True):
        for tid in ("T2", "T10"):
            assert tasks[tid].state.value == "done" and tasks[tid].merged_commit, (demo.size, tasks[tid])
        first = tasks["T10"].overrides[0]
        assert (first.actor, first.note) == ("human:you", NOTE), (demo.size, tasks["T10"].overrides)
        # the override covers what landed: its own commit, or the builder's re-merge it was carried to
        last = tasks["T10"].overrides[-1]
        assert last.commit == tasks["T10"].commit, (demo.size, tasks["T10"].overrides)
        assert all(o.note == NOTE and o.actor == "human:you" for o in tasks["T10"].overrides)
