"""TUI pilots: a real store on a tmp SQLite file, real events, the keys a human presses.

No orchestrator: the state is built by appending the events agents and gates
would append, so what is on screen is exactly what the store folded.
"""

from __future__ import annotations

import asyncio

import pytest
from textual.pilot import Pilot

from cockpit.config import FactoryConfig, FactorySection, ProductConfig
from cockpit.domain import Event, Kind, TaskState
from cockpit.factory import commands
from cockpit.store import Store
from cockpit.tui import CockpitApp
from cockpit.tui.messages import EventsArrived
from cockpit.tui.screens.main import MainScreen
from cockpit.tui.screens.prompt import PromptScreen
from cockpit.tui.widgets.activity import ActivityLog
from cockpit.tui.widgets.needs_you import NeedsYou
from cockpit.tui.widgets.product_pane import ProductPane
from tui_kit import until

HUMAN = "human:you"


@pytest.fixture
def config() -> FactoryConfig:
    return FactoryConfig(
        factory=FactorySection(name="acme", human=HUMAN),
        products=[
            ProductConfig(name="shop", path="shop", test_command="pytest -q", budget_usd=10),
            ProductConfig(name="blog", path="blog", test_command="pytest -q"),
        ],
    )


async def new_task(store: Store, product: str, title: str) -> str:
    return (await commands.add_task(store, product=product, title=title, actor=HUMAN)).task_id


async def start(store: Store, product: str, task_id: str, agent: str = "builder-1") -> None:
    await store.append(Event(kind=Kind.TASK_STARTED, actor="system", product=product, task_id=task_id,
                             data={"agent": agent}))


async def blocked_task(store: Store, product: str = "shop", title: str = "Add CSV export",
                       sha: str = "abc1234def") -> str:
    """The path every blocked task takes: started, committed, submitted, tests failed, blocked."""
    t = await new_task(store, product, title)
    await start(store, product, t)
    for kind, actor, data in [
        (Kind.COMMITTED, "builder-1", {"sha": sha}),
        (Kind.SUBMITTED, "builder-1", {}),
        (Kind.VERDICT, "system", {"gate": "tests", "commit": sha, "outcome": "fail", "detail": "3 failed"}),
        (Kind.BLOCKED, "system", {"reasons": ["tests"], "detail": "3 failed, 12 passed"}),
    ]:
        await store.append(Event(kind=kind, actor=actor, product=product, task_id=t, data=data))
    return t


def screen_text(app: CockpitApp) -> str:
    """What a person would read on the terminal right now."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def main_screen(app: CockpitApp) -> MainScreen:
    screen = app.screen
    assert isinstance(screen, MainScreen)
    return screen


def pane(app: CockpitApp, product: str) -> ProductPane:
    return main_screen(app).panes[product]


async def type_text(pilot: Pilot, text: str) -> None:
    """Key by key, as a person types (keep texts short: each key waits for the app to idle)."""
    await pilot.press(*text)


# --- what is shown -----------------------------------------------------------------


async def test_products_and_blocked_task_are_shown(store, config):
    """The human sees every product and, at the top in the error colour, what waits for them."""
    t1 = await blocked_task(store)
    t2 = await new_task(store, "blog", "RSS feed")
    app = CockpitApp(store, config)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: "⚠ T1 blocked: tests" in screen_text(app))  # history: a restart shows the past
        text = screen_text(app)
        assert app.title == "Cockpit — acme"
        assert "shop" in text and "blog" in text
        strip = app.screen.query_one(NeedsYou)
        assert strip.task_ids == [t1] and strip.has_class("-attention")
        assert f"{t1} shop · Add CSV export" in text and "tests: 3 failed, 12 passed" in text
        # the blocked row is marked in its pane, the other pane has its queued task
        assert pane(app, "shop").table.blocked == {t1} and pane(app, "shop").has_class("-blocked")
        assert pane(app, "blog").table.get_row_index(t2) == 0
        assert "1 blocked" in str(pane(app, "shop").border_title)
        assert "$0.00 / $10.00" in str(pane(app, "shop").border_subtitle)  # spend against budget, below
        # history: a restart shows what happened before it
        assert "⚠ T1 blocked: tests" in text
        # the strip has focus, so the keys act on the blocked task right away
        assert main_screen(app).selected_task_id == t1


async def test_fits_80x24(store, config):
    """The smallest usual terminal still shows every product pane and the footer keys."""
    await blocked_task(store)
    await new_task(store, "blog", "RSS feed")
    app = CockpitApp(store, config)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "Approve" in screen_text(app), timeout=15)
        text = screen_text(app)
        assert "shop" in text and "blog" in text
        assert "Approve" in text and "Send back" in text
        for name in ("shop", "blog"):
            region = pane(app, name).region
            assert region.height >= 4 and app.screen.region.contains_region(region), name


async def test_nothing_blocked_keeps_the_strip_quiet(store, config):
    """With nothing to do for the human the strip takes no focus and no error colour."""
    await new_task(store, "shop", "Add CSV export")
    app = CockpitApp(store, config)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        strip = app.screen.query_one(NeedsYou)
        assert strip.disabled and not strip.has_class("-attention")
        assert "Nothing needs you" in screen_text(app)
        assert main_screen(app).selected_task_id == "T1"


# --- keys ----------------------------------------------------------------------------


async def test_approve_records_override_with_note(store, config):
    """`a` + a note lands the blocked task through the domain, recorded with who and why."""
    t1 = await blocked_task(store)
    app = CockpitApp(store, config)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        await pilot.press("a")
        assert isinstance(app.screen, PromptScreen)
        await type_text(pilot, "by hand")
        await pilot.press("enter")
        await until(pilot, lambda: store.task(t1).state == TaskState.MERGING)
        [override] = await store.events(kinds=[Kind.OVERRIDE])
        assert override.actor == HUMAN and override.task_id == t1
        assert override.data["note"] == "by hand"
        # the strip empties and the pane follows
        await until(pilot, lambda: not app.screen.query_one(NeedsYou).task_ids)
        assert pane(app, "shop").table.blocked == set()
        # the emptied strip hands focus to the same task in its pane, not to a random widget (once the pane has
        # followed: the selection moves a refresh after the strip empties)
        await until(pilot, lambda: app.focused is pane(app, "shop").table and main_screen(app).selected_task_id == t1)


async def test_prompt_refuses_empty_and_escape_cancels(store, config):
    """An override without a note is not sent at all; Escape records nothing."""
    t1 = await blocked_task(store)
    app = CockpitApp(store, config)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        await pilot.press("a")
        await pilot.press("space", "enter")
        assert isinstance(app.screen, PromptScreen)
        assert "note is required" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        await pilot.pause()
    assert await store.events(kinds=[Kind.OVERRIDE, Kind.REFUSED]) == []
    assert store.task(t1).state == TaskState.BLOCKED


async def test_send_back_records_instruction(store, config):
    """`b` + an instruction sends the task back to building, the instruction recorded."""
    t1 = await blocked_task(store)
    app = CockpitApp(store, config)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        await pilot.press("b")
        await type_text(pilot, "quote csv")
        await pilot.press("enter")
        await until(pilot, lambda: store.task(t1).state == TaskState.BUILDING)
    [sent] = await store.events(kinds=[Kind.SENT_BACK])
    assert sent.actor == HUMAN and sent.data["reason"] == "quote csv"


async def test_retry_records_human_retry(store, config):
    """`r` resumes the blocked task where it stopped."""
    t1 = await blocked_task(store)
    app = CockpitApp(store, config)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        await until(pilot, lambda: store.task(t1).state == TaskState.CHECKING)
    [retry] = await store.events(kinds=[Kind.RETRY])
    assert retry.actor == HUMAN and retry.task_id == t1


async def test_approve_on_task_not_blocked_shows_domain_refusal(store, config):
    """The TUI does not pre-judge: the domain refuses, the refusal is recorded and shown."""
    await blocked_task(store)
    t2 = await new_task(store, "shop", "Fix rounding")
    await start(store, "shop", t2)
    app = CockpitApp(store, config)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        table = pane(app, "shop").table
        table.focus()
        table.select_task(t2)
        # the selection reaches the screen by a message: wait for it, not for one pause (a loaded box is slower)
        await until(pilot, lambda: main_screen(app).selected_task_id == t2)
        await pilot.press("a")
        await type_text(pilot, "ok")
        await pilot.press("enter")
        await until(pilot, lambda: any("refused" in (n.title or "") for n in app._notifications))
        [note] = [n for n in app._notifications if "refused" in (n.title or "")]
        assert "building" in note.message and note.severity == "error"
        [refused] = await store.events(kinds=[Kind.REFUSED])
        assert refused.data["kind"] == Kind.OVERRIDE and refused.actor == HUMAN and refused.task_id == t2
        assert store.task(t2).state == TaskState.BUILDING
        # and the refusal shows up in the activity stream too
        await until(pilot, lambda: "✗ refused human.override on T2" in screen_text(app))


async def test_next_blocked_cycles_through_blocked_tasks(store, config):
    """`n` walks the human from one blocked task to the next, across products, and wraps."""
    t1 = await blocked_task(store, "shop")
    t2 = await new_task(store, "shop", "queued one")
    t3 = await blocked_task(store, "blog", "RSS feed", sha="fff0001")
    app = CockpitApp(store, config)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        screen = main_screen(app)
        table = pane(app, "shop").table
        table.focus()
        table.select_task(t2)
        await until(pilot, lambda: screen.selected_task_id == t2)
        # each move is a message round through the app: wait for it (a loaded CI box once read T2 still selected)
        await pilot.press("n")
        await until(pilot, lambda: screen.selected_task_id == t3)
        assert pane(app, "blog").table.selected_task_id == t3
        await pilot.press("n")
        await until(pilot, lambda: screen.selected_task_id == t1)
        await pilot.press("n")
        await until(pilot, lambda: screen.selected_task_id == t3)


async def test_live_events_show_up_in_panes_and_activity(store, config):
    """Events committed after start reach the screen through the bridge, without a restart."""
    app = CockpitApp(store, config)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        t1 = await blocked_task(store, "blog", "RSS feed")
        await store.append(Event(kind=Kind.AGENT_TOOL, actor="builder-1", product="blog", task_id=t1,
                                 data={"agent": "builder-1", "name": "write_file",
                                       "input": {"path": "blog/feed.py", "content": "..."}}))
        await until(pilot, lambda: "builder-1  ▸ write_file blog/feed.py" in screen_text(app))
        assert pane(app, "blog").table.blocked == {t1}
        assert app.screen.query_one(NeedsYou).task_ids == [t1]
        # a product missing from factory.toml still gets a pane: nothing in the store is hidden
        t2 = await new_task(store, "docs", "Write the README")
        await until(pilot, lambda: "docs" in main_screen(app).panes)
        await until(pilot, lambda: pane(app, "docs").table.row_count == 1)
        assert pane(app, "docs").table.get_row_index(t2) == 0


async def test_bridge_coalesces_a_burst_into_few_messages(store, config):
    """A burst of streamed text costs a handful of repaints, not one per chunk; text joins into lines."""
    batches: list[EventsArrived] = []

    def hook(message):
        if isinstance(message, EventsArrived) and not message.history:
            batches.append(message)

    app = CockpitApp(store, config)
    async with app.run_test(size=(120, 36), message_hook=hook) as pilot:
        await pilot.pause()
        chunks = ["Reading ", "the tests", ".\nThe CSV ", "writer needs ", "quoting.\n"] * 100
        for c in chunks:
            store.post(Event(kind=Kind.AGENT_TEXT, actor="builder-1", data={"agent": "builder-1", "text": c}))
        await store.flush()
        await until(pilot, lambda: sum(len(b.events) for b in batches) == len(chunks))
        assert len(batches) <= 10  # typically 1-2; never one per chunk
        log = app.screen.query_one(ActivityLog)
        lines = [log.lines[i] for i in range(log.line_count)]
        assert sum(line.endswith("│ Reading the tests.") for line in lines) == 100
        assert sum(line.endswith("│ The CSV writer needs quoting.") for line in lines) == 100
        assert log.is_vertical_scroll_end  # it follows the stream


async def test_orchestrator_runs_as_a_worker_and_its_crash_is_shown(store, config):
    """The orchestrator runs inside the app; if it dies the cockpit stays up and says so."""
    started = asyncio.Event()

    class Crashing:
        async def run(self):
            started.set()
            raise RuntimeError("git is missing")

    app = CockpitApp(store, config, orchestrator=Crashing())
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, started.is_set)
        await until(pilot, lambda: app.sub_title == "orchestrator stopped")
        assert any("git is missing" in n.message for n in app._notifications)
        assert app.is_running


async def test_palette_offers_the_actions_and_a_theme_change_recolours(store, config):
    """ctrl+p finds every action; gate lights follow the theme (they are drawn in its colours)."""
    t1 = await blocked_task(store)
    app = CockpitApp(store, config)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("Approve selected task", "Send back selected task", "Retry selected task",
                      "Next blocked task", "Go to shop", "Go to blog"):
            assert title in titles
        table = pane(app, "shop").table
        before = table.get_cell(t1, "tests").style.color
        app.theme = "gruvbox"
        await pilot.pause()
        after = table.get_cell(t1, "tests").style.color
        assert after != before
        assert after.triplet.hex.lower() == app.get_css_variables()["error"].lower()


async def test_orchestrator_shares_the_store_and_is_cancelled_on_quit(store, config):
    """What the orchestrator appends shows up live; quitting cancels it (it must clean up then)."""
    cancelled = asyncio.Event()

    class Working:
        async def run(self):
            await commands.add_task(store, product="blog", title="Tag pages", actor="system")
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

    app = CockpitApp(store, config, orchestrator=Working())
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: pane(app, "blog").table.row_count == 1)
        await pilot.press("q")
    assert cancelled.is_set()


# --- pure formatting -------------------------------------------------------------------


def test_event_lines_read_like_a_log():
    """One line per event, `time actor what`, tool calls name what they touched."""
    from cockpit.domain.format import event_line

    ev = Event(kind=Kind.AGENT_TOOL, actor="builder-1", ts=0,
               data={"agent": "builder-1", "name": "write_file", "input": {"path": "shop/export.py"}})
    assert event_line(ev).endswith("builder-1  ▸ write_file shop/export.py")
    verdict = Event(kind=Kind.VERDICT, actor="system", task_id="T3", ts=0,
                    data={"gate": "tests", "commit": "abc1234def", "outcome": "fail", "detail": "2 failed\nmore"})
    assert event_line(verdict).endswith("system     ⚙ tests FAIL on T3 @abc1234d — 2 failed …")
    assert event_line(Event(kind="spend.reserved", actor="system", data={"usd": 1})) is None
    call = Event(kind=Kind.MODEL_CALL, actor="builder-1", task_id="T1", ts=0,
                 data={"model": "claude-x", "usd": 0.0123, "stop_reason": "tool_use",
                       "usage": {"input_tokens": 200, "cache_read_input_tokens": 1800, "output_tokens": 40}})
    assert event_line(call).endswith("◇ claude-x on T1 · 2.0k in / 40 out · 1.8k cached · $0.0123 · tool_use")
    assert "· something.new" in event_line(Event(kind="something.new", actor="system", data={}))
