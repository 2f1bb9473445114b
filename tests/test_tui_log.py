"""Agent logs: the writer (events → memory/logs/AGENT.log), the block index and LogView (the Line API view the
cockpit's `t` opens), and `cockpit tail`. Real files, a real store, the real CLI in a subprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
from textual.app import App, ComposeResult

from cockpit.cli import main as cli
from cockpit.domain import Event, Kind
from cockpit.factory.agent_log import AgentLogWriter, LineMaker, last_lines, log_path, logs_dir
from cockpit.store import Store
from cockpit.tui.widgets import log_view
from cockpit.tui.widgets.log_view import LogView, scan_file
from factory_kit import write_factory
from tui_kit import until

LINES = [f"line {i} " + "x" * (i % 97) for i in range(3000)] + ["", "", "tail of it ÿ", "x" * 70000, "last"]


def write(path, lines, *, newline_at_end=True):
    path.write_text("\n".join(lines) + ("\n" if newline_at_end else ""), encoding="utf-8")


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of ~1 KiB and reads of 4 KiB: every boundary case on a small file."""
    monkeypatch.setattr(log_view, "BLOCK", 1024)
    monkeypatch.setattr(log_view, "CHUNK", 4096)


# --- the index -------------------------------------------------------------------------------


@pytest.mark.parametrize("newline_at_end", [True, False])
def test_scan_finds_every_line_across_block_and_chunk_boundaries(tmp_path, small_blocks, newline_at_end):
    path = tmp_path / "a.log"
    write(path, LINES, newline_at_end=newline_at_end)
    scan = scan_file(path)
    data = path.read_bytes()
    assert scan.lines == data.count(b"\n") and scan.size == len(data)
    assert scan.end == (len(data) if newline_at_end else data.rindex(b"\n") + 1)
    # every block starts on a line start, and says which line that is
    for offset, first in zip(scan.offsets, scan.first_lines, strict=True):
        assert offset == 0 or data[offset - 1:offset] == b"\n"
        assert data[:offset].count(b"\n") == first
    assert len(scan.offsets) > 100  # many small blocks


class ViewApp(App[None]):
    def __init__(self, path, follow=True):
        super().__init__()
        self.path, self.follow = path, follow

    def compose(self) -> ComposeResult:
        yield LogView(self.path, follow=self.follow)


async def test_view_reads_every_line_and_follows_appends_and_truncation(tmp_path, small_blocks):
    path = tmp_path / "a.log"
    write(path, LINES, newline_at_end=False)
    app = ViewApp(path)
    async with app.run_test(size=(100, 20)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: view.indexed)
        assert view.line_count == len(LINES)
        got = [view.get_line(i) for i in range(view.line_count)]
        assert got[:-2] == [ln[: log_view.MAX_LINE_CHARS] for ln in LINES[:-2]] and got[-1] == "last"
        assert len(got[-2]) == log_view.MAX_LINE_CHARS  # a huge line is cut when shown
        assert view.scroll_offset.y == view.max_scroll_y  # at the end
        # the last line grows, then more lines come: shown without reopening, the view stays at the end
        with open(path, "a") as f:
            f.write(" and more\nnew 1\nnew 2\n")
        await until(pilot, lambda: view.line_count == len(LINES) + 2)
        assert view.get_line(len(LINES) - 1) == "last and more" and view.get_line(view.line_count - 1) == "new 2"
        await pilot.pause(0.1)
        assert view.scroll_offset.y == view.max_scroll_y
        # the file is replaced by a shorter one (rotated): indexed again from the start
        write(path, ["fresh"])
        await until(pilot, lambda: view.line_count == 1 and view.get_line(0) == "fresh")


async def test_the_end_shows_before_the_index_is_built(tmp_path):
    """Opening shows the last lines at once, from a read of the tail; the index catches up in a thread."""
    path = tmp_path / "a.log"
    write(path, [f"entry {i}" for i in range(200_000)])
    app = ViewApp(path)
    async with app.run_test(size=(100, 20)) as pilot:
        view = app.query_one(LogView)
        assert view.get_line(view.line_count - 1) == "entry 199999"  # before any scan
        await until(pilot, lambda: view.indexed)
        assert view.line_count == 200_000 and view.get_line(123_456) == "entry 123456"


async def test_search_highlights_and_walks_matches_both_ways_with_wraparound(tmp_path, small_blocks):
    path = tmp_path / "a.log"
    lines = [f"row {i}" + (" NEEDLE here" if i in (5, 700, 2999) else "") for i in range(3000)]
    write(path, lines, newline_at_end=False)
    app = ViewApp(path, follow=False)
    async with app.run_test(size=(100, 20)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: view.indexed)
        view.set_search("needle")  # case-insensitive
        found = []
        for _ in range(4):
            before = view.current_match
            view.find()
            await until(pilot, lambda: view.current_match != before)  # noqa: B023 (waited on at once)
            found.append(view.current_match)
        assert found == [5, 700, 2999, 5]  # wraps around
        view.find(backwards=True)
        await until(pilot, lambda: view.current_match == 2999)
        assert view.scroll_offset.y <= 2999 < view.scroll_offset.y + view.scrollable_content_region.height
        # the shown match is styled as the current one
        y = 2999 - view.scroll_offset.y
        strip = view.render_line(y)
        current = view.get_component_rich_style("log-view--current")
        assert any(seg.text == "NEEDLE" and seg.style.bgcolor == current.bgcolor for seg in strip)
        view.set_search("absent")
        view.find()
        await until(pilot, lambda: any("not in this log" in n.message for n in app._notifications))


# --- the writer ------------------------------------------------------------------------------


async def test_writer_writes_each_agents_log_and_resumes_without_duplicates(tmp_path):
    store = await Store.open(tmp_path / "memory" / "cockpit.db")
    directory = tmp_path / "memory" / "logs"
    try:
        for text in ("Reading ", "the tests.\nThe CSV ", "writer needs quoting."):
            await store.append(Event(kind=Kind.AGENT_TEXT, actor="builder-1", task_id="T1", data={"text": text}, ts=0))
        await store.append(Event(kind=Kind.AGENT_TOOL, actor="builder-1", task_id="T1",
                                 data={"name": "write_file", "input": {"path": "shop/export.py"}}, ts=0))
        await store.append(Event(kind=Kind.AGENT_TEXT, actor="reviewer-1", data={"text": "Looks right.\n"}, ts=0))
        await store.append(Event(kind="spend.reserved", actor="system", data={"agent": "builder-1", "usd": 1}, ts=0))
        writer = AgentLogWriter(store, directory)
        await writer.write(await store.events())
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(0))
        assert (directory / "builder-1.log").read_text() == (
            f"{stamp} │ Reading the tests.\n{stamp} │ The CSV writer needs quoting.\n"
            f"{stamp} ▸ write_file shop/export.py\n")
        assert (directory / "reviewer-1.log").read_text() == f"{stamp} │ Looks right.\n"
        # a restart picks up after the cursor: nothing written twice, nothing lost
        await store.append(Event(kind=Kind.AGENT_TEXT, actor="builder-1", data={"text": "Half a line"}, ts=0))
        again = AgentLogWriter.start(store, directory)
        await store.append(Event(kind=Kind.AGENT_FINISHED, actor="builder-1", data={"reason": "ended"}, ts=0))
        path = directory / "builder-1.log"
        for _ in range(500):
            if path.read_text().endswith("■ finished (ended)\n"):
                break
            await asyncio.sleep(0.02)
        await again.stop()
        text = path.read_text()
        assert text.count("Reading the tests.") == 1
        assert text.endswith(f"{stamp} │ Half a line\n{stamp} ■ finished (ended)\n")
        assert int((directory / ".cursor").read_text()) == store.last_event_id
    finally:
        await store.close()


def test_line_maker_names_whose_log_an_event_is():
    maker = LineMaker(describe=lambda e: e.kind)
    assert maker.feed(Event(kind="x", actor="system", ts=0)) is None
    assert maker.feed(Event(kind="agent.stopped", actor="human:you", data={"agent": "builder-7"}, ts=0))[0] == "builder-7"
    assert maker.feed(Event(kind="x", actor="breaker-2", ts=0))[0] == "breaker-2"


def test_log_path_refuses_names_that_leave_the_directory(tmp_path):
    from cockpit.domain.errors import Refused

    for bad in ("../x", "a/b", "", ".."):
        with pytest.raises(Refused):
            log_path(tmp_path, bad)


def test_last_lines_reads_only_the_end(tmp_path):
    path = tmp_path / "a.log"
    write(path, [f"n{i}" for i in range(100_000)])
    data, size = last_lines(path, 3, block=64)
    assert data == b"n99997\nn99998\nn99999\n" and size == path.stat().st_size
    write(path, ["a", "b"], newline_at_end=False)
    assert last_lines(path, 5)[0] == b"a\nb"
    assert last_lines(path, 0)[0] == b""


# --- cockpit tail ----------------------------------------------------------------------------


def test_cockpit_tail_prints_the_end_and_follows(tmp_path, capsys):
    from cockpit.config import load_factory

    factory = write_factory(tmp_path / "f", products=())
    directory = logs_dir(load_factory(factory))
    directory.mkdir(parents=True)
    log = directory / "builder-3.log"
    write(log, [f"step {i}" for i in range(50)])
    assert cli(["tail", "builder-3", "-n", "2", "--factory", str(factory)]) == 0
    assert capsys.readouterr().out == "step 48\nstep 49\n"
    assert cli(["tail", "builder-9", "--factory", str(factory)]) == 1
    err = capsys.readouterr().err
    assert "no log for builder-9" in err and "builder-3" in err
    proc = subprocess.Popen([sys.executable, "-m", "cockpit", "tail", "builder-3", "--follow", "-n", "1", "--factory",
                             str(factory)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout.readline() == "step 49\n"
        with open(log, "a") as f:
            f.write("step 50\n")
        assert proc.stdout.readline() == "step 50\n"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
