"""Pilots for every key of the cockpit beyond the main screen's a/b/r/n/q (tests/test_tui.py has those):
press it, check the screen, check what the store recorded.

Real parts only: a store on a SQLite file, a product that is a git repo (for the diff), the agent-log
writer on the store's stream, the memory module on the store, a rules dir on disk.
"""

from __future__ import annotations

import re

import pytest
from textual.command import CommandPalette
from textual.widgets import DataTable, Input

from cockpit.domain import Event, Kind, TaskState
from cockpit.factory.agent_log import AgentLogWriter, log_path, logs_dir
from cockpit.store.memory import Memory
from cockpit.tui import CockpitApp
from cockpit.tui.app import DARK, LIGHT
from cockpit.tui.screens.agent_log import AgentLogScreen
from cockpit.tui.screens.help import HelpScreen
from cockpit.tui.screens.main import MainScreen
from cockpit.tui.screens.memory import MemoryScreen
from cockpit.tui.screens.prompt import ConfirmScreen, PromptScreen
from cockpit.tui.screens.rules import RulesScreen
from cockpit.tui.screens.spend import SpendScreen
from cockpit.tui.screens.task import TaskScreen
from cockpit.tui.screens.task_form import TaskForm
from gitrepo import commit_files, make_repo, run_git
from tui_kit import HUMAN, blocked_task, make_config, new_task, screen_text, start, type_text, until

SIZE = (120, 36)


@pytest.fixture
def config(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "house.md").write_text("---\ntitle: House\n---\nKeep changes small.\n")
    return make_config(tmp_path)


def main(app: CockpitApp) -> MainScreen:
    return app.main_screen


async def open_task_screen(pilot, app, task_id: str) -> TaskScreen:
    main(app).select_task(task_id)
    await pilot.pause()
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, TaskScreen))
    return app.screen


# --- the task screen -----------------------------------------------------------------------


async def test_enter_opens_the_task_with_gates_diff_agents_and_history(store, config, tmp_path):
    """enter on a task: its verdicts, its diff against main from git, its agent's transcript, its history; esc back."""
    repo = make_repo(tmp_path / "shop")
    run_git(repo, "checkout", "-q", "-b", "work")
    sha = commit_files(repo, {"shop_export.py": "def to_csv(rows):\n    return 'id,total'\n"}, "csv export")
    run_git(repo, "checkout", "-q", "main")
    t1 = await blocked_task(store, sha=sha)
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_task_screen(pilot, app, t1)
        await until(pilot, lambda: "FAIL" in screen_text(app))
        text = screen_text(app)
        assert f"{t1} · shop · Add CSV export" in text and "blocked — tests: 3 failed, 12 passed" in text
        assert f"tests  {sha[:8]}  FAIL" in text and "still needs: tests, review" in text
        await pilot.press("2")
        assert screen.page == "diff"
        await until(pilot, lambda: "def to_csv(rows):" in screen_text(app))
        assert f"{sha[:10]} against main" in screen_text(app)
        await pilot.press("5")
        await until(pilot, lambda: "Reading the tests first." in screen_text(app))
        assert "builder-1" in screen_text(app) and "▸ write_file shop/export.py" in screen_text(app)
        await pilot.press("6")
        await until(pilot, lambda: "⚠ T1 blocked: tests" in screen_text(app))
        # live: a new event of the task shows up without reopening
        await store.append(Event(kind=Kind.NOTE, actor="system", product="shop", task_id=t1, data={"text": "hello"}))
        await until(pilot, lambda: "· hello" in screen_text(app))
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_task_screen_keys_record_the_human_actions(store, config):
    """a, b, r, + and e on the task screen go through the commands; each is recorded with the human as actor."""
    t1 = await blocked_task(store)
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        await open_task_screen(pilot, app, t1)
        # r: retry
        await pilot.press("r")
        await until(pilot, lambda: store.task(t1).state == TaskState.CHECKING)
        await store.append(Event(kind=Kind.BLOCKED, actor="system", product="shop", task_id=t1,
                                 data={"reasons": ["tests"], "detail": "again"}))
        # b: send back with an instruction
        await pilot.press("b")
        assert isinstance(app.screen, PromptScreen)
        await type_text(pilot, "quote it")
        await pilot.press("enter")
        await until(pilot, lambda: store.task(t1).state == TaskState.BUILDING)
        # e: edit the title (the form comes prefilled)
        await pilot.press("e")
        assert isinstance(app.screen, TaskForm)
        title = app.screen.query_one("#title", Input)
        assert title.value == "Add CSV export"
        title.value = "Add CSV export, quoted"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: store.task(t1).title == "Add CSV export, quoted")
        await until(pilot, lambda: "Add CSV export, quoted" in screen_text(app))
    [retry] = await store.events(kinds=[Kind.RETRY])
    [sent] = await store.events(kinds=[Kind.SENT_BACK])
    [edited] = await store.events(kinds=[Kind.TASK_EDITED])
    assert retry.actor == sent.actor == edited.actor == HUMAN
    assert sent.data["reason"] == "quote it" and edited.data == {"title": "Add CSV export, quoted"}


async def test_override_and_raise_budget_from_the_task_screen(store, config):
    """a lands a blocked task with a note; + raises the task's own budget by the amount typed (not a bad amount)."""
    t1 = await blocked_task(store)
    t2 = await new_task(store, "shop", "Budgeted", budget_usd=2.0)
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        await open_task_screen(pilot, app, t1)
        await pilot.press("a")
        await type_text(pilot, "fine")
        await pilot.press("enter")
        await until(pilot, lambda: store.task(t1).state == TaskState.MERGING)
        await pilot.press("escape")
        await open_task_screen(pilot, app, t2)
        await pilot.press("plus")
        await until(pilot, lambda: "its own budget ($2.00)" in screen_text(app))
        await type_text(pilot, "x")
        await pilot.press("enter")
        assert isinstance(app.screen, PromptScreen) and "not an amount" in screen_text(app)
        await pilot.press("backspace", "5", "enter")
        await until(pilot, lambda: store.task(t2).budget_usd == 7.0)
    [override] = await store.events(kinds=[Kind.OVERRIDE])
    assert override.actor == HUMAN and override.data["note"] == "fine"
    [raised] = await store.events(kinds=[Kind.BUDGET_RAISED])
    assert raised.actor == HUMAN and raised.data == {"scope": "task", "key": t2, "usd": 5.0}


async def test_agent_keys_without_a_factory_are_refused_and_say_why(store, config):
    """p and x need the factory that runs the agent; in a read-only cockpit they say so and record nothing."""
    t1 = await blocked_task(store)
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        await open_task_screen(pilot, app, t1)
        await pilot.press("p")
        await until(pilot, lambda: any(n.message.startswith("pause builder-1: no factory runs")
                                       for n in app._notifications))
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(pilot, lambda: any(n.message.startswith("stop builder-1: no factory runs") for n in app._notifications))
    assert await store.events(kinds=["agent.paused", Kind.AGENT_STOPPED]) == []


# --- the agent log -------------------------------------------------------------------------


async def test_t_tails_the_agents_log_with_follow_search_and_jumps(store, config, tmp_path):
    """t on a task opens its agent's log (written from the event stream); it follows new lines, finds, jumps."""
    t1 = await blocked_task(store)
    writer = AgentLogWriter.start(store, config)
    path = log_path(logs_dir(config), "builder-1")
    try:
        app = CockpitApp(store, config)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: path.exists() and b"submitted" in path.read_bytes())
            main(app).select_task(t1)
            await pilot.pause()
            await pilot.press("t")
            assert isinstance(app.screen, AgentLogScreen) and app.screen.agent == "builder-1"
            view = app.screen.view
            await until(pilot, lambda: "│ Reading the tests first." in screen_text(app))
            # its own 8 lines, then its task's verdict and block (events that name no agent go to the builder's log)
            await until(pilot, lambda: "10 lines · following" in screen_text(app))
            assert view.line_count == 10 and "blocked: tests" in view.get_line(9)
            # the agent goes on: the new lines show up, and the view stays at the end
            for i in range(60):
                store.post(Event(kind=Kind.AGENT_TEXT, actor="builder-1", product="shop", task_id=t1,
                                 data={"text": f"step {i} done\n"}))
            await until(pilot, lambda: "step 59 done" in screen_text(app))
            # f: follow off, g: top
            await pilot.press("f")
            assert not view.follow and "paused" in screen_text(app)
            await pilot.press("g")
            assert view.scroll_offset.y == 0
            # /: find, with every hit highlighted; n and N walk the hits
            await pilot.press("slash")
            await type_text(pilot, "step 1")
            await pilot.press("enter")
            await until(pilot, lambda: view.current_match is not None)
            first = view.current_match
            assert "step 1 done" in view.get_line(first) and "find 'step 1'" in screen_text(app)
            await pilot.press("n")
            await until(pilot, lambda: view.current_match != first)
            assert "step 1" in view.get_line(view.current_match) and view.current_match > first
            await pilot.press("N")
            await until(pilot, lambda: view.current_match == first)
            # G: the end, following again
            await pilot.press("G")
            assert view.follow and view.scroll_offset.y == view.max_scroll_y
            await pilot.press("escape")
            assert isinstance(app.screen, MainScreen)
    finally:
        await writer.stop()


# --- adding work ---------------------------------------------------------------------------


async def test_c_adds_a_task_from_the_form(store, config):
    """c opens the form (product, title, body, priority); ctrl+s queues the task as the human, with the product's
    task budget; an empty title is refused on the spot."""
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        assert isinstance(app.screen, TaskForm)
        await pilot.press("ctrl+s")
        assert "A task needs a title." in screen_text(app)
        await type_text(pilot, "Add RSS")
        await pilot.press("enter")  # on to the body
        await type_text(pilot, "atom too")
        app.screen.query_one("#priority", Input).value = "3"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(store.tasks()) == 1)
        await until(pilot, lambda: main(app).panes["shop"].table.row_count == 1)
    [created] = await store.events(kinds=[Kind.TASK_CREATED])
    assert created.actor == HUMAN and created.product == "shop"
    assert created.data == {"title": "Add RSS", "body": "atom too", "priority": 3, "budget_usd": 2.0}


# --- the other screens ---------------------------------------------------------------------


async def test_dollar_shows_spend_per_product_with_a_sparkline(store, config):
    """$ opens the spend screen: a row per product with what it spent (from the ledger) and its last 14 days."""
    t1 = await new_task(store, "shop", "Add CSV export")
    await start(store, "shop", t1)
    await store.reserve(call_id="c1", task_id=t1, product="shop", actor="builder-1", model="claude-x", usd=0.5)
    await store.settle(call_id="c1", task_id=t1, product="shop", usd=0.25,
                       usage={"input_tokens": 100, "output_tokens": 10})
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("dollar_sign")
        assert isinstance(app.screen, SpendScreen)
        await until(pilot, lambda: app.screen.loaded > 0)
        table = app.screen.query_one("#spend-products", DataTable)
        shop = [str(c) for c in table.get_row("shop")]  # cells are Text (issue 18: never markup)
        assert shop[2] == "$0.2500" and shop[3] == "$10.00" and shop[4] == "2%" and shop[7] == "1"
        assert str(shop[1]).endswith("█") and set(str(shop[1])[:-1]) == {"▁"}  # today's spend, none before
        assert "product shop" in screen_text(app)  # its budget line
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        # and the main screen's bar shows it too
        await until(pilot, lambda: "$0.25 / $10.00" in str(main(app).panes["shop"].border_subtitle))


async def test_u_shows_the_rules_in_force_and_their_reloads(store, config):
    """u: the rules' hash, files, the last reload and the broken files, from rules.changed / rules.error events."""
    await store.append(Event(kind="rules.changed", actor="system",
                             data={"old_hash": "aaaa1111", "new_hash": "bbbb2222", "files": ["rules/house.md"]}))
    await store.append(Event(kind="rules.error", actor="system",
                             data={"file": "rules/bad.md", "line": 3, "message": "unknown key 'rolez'"}))
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("u")
        assert isinstance(app.screen, RulesScreen)
        await until(pilot, lambda: app.screen.loaded > 0)
        text = screen_text(app)
        assert "rules/house.md" in text and "House" in text and "(aaaa1111 → bbbb2222)" in text
        assert "✗ rules error rules/bad.md:3: unknown key 'rolez'" in text
        # a broken file on disk is listed with its line, the rest stays in force
        (config.rules_path / "bad.md").write_text("---\nrolez: [builder]\n---\nx\n")
        await until(pilot, lambda: "rules/bad.md" in str(app.screen.query_one("#rules-errors", DataTable).get_row_at(0)[0])
                    if app.screen.query_one("#rules-errors", DataTable).row_count else False)


async def test_m_searches_edits_pins_and_deletes_lessons(store, config):
    """m: lessons from the memory; / searches, e edits, p pins, d deletes (for good); each recorded as the human."""
    memory = Memory(store)
    a = await memory.remember("Use Decimal for money, never float.", product="shop", role="builder", source_task="T9",
                              actor="builder-1")
    await memory.remember("Quote CSV fields that hold commas.", product="shop", role="builder", source_task="T8",
                          actor="builder-1")
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        screen = app.screen
        assert isinstance(screen, MemoryScreen)
        await until(pilot, lambda: screen.loaded > 0 and len(screen.lessons) == 2)
        await pilot.press("slash")
        await type_text(pilot, "decimal")
        await pilot.press("enter")
        await until(pilot, lambda: [lesson.id for lesson in screen.lessons] == [a.lesson_id])
        assert "Use Decimal for money" in screen_text(app)
        await pilot.press("p")
        await until(pilot, lambda: screen.lessons and screen.lessons[0].pinned)
        await pilot.press("e")
        assert isinstance(app.screen, PromptScreen)
        app.screen.query_one(Input).value = "Use Decimal for money, with ROUND_HALF_UP."
        await pilot.press("enter")
        await until(pilot, lambda: screen.lessons and "ROUND_HALF_UP" in screen.lessons[0].text)
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.pause(MemoryScreen.CONFIRM_SETTLE_S)  # a deliberate y, not one typed ahead
        await pilot.press("y")
        await until(pilot, lambda: screen.loaded and not screen.lessons)
    kinds = [(e.kind, e.actor) for e in await store.events(kinds=["memory.pinned", "memory.updated", "memory.deleted"])]
    assert kinds == [("memory.pinned", HUMAN), ("memory.updated", HUMAN), ("memory.deleted", HUMAN)]
    assert (await memory.get(a.lesson_id)).deleted


async def test_question_mark_lists_every_key_of_the_screen(store, config):
    """? shows the keys of the screen it was pressed on, and the cockpit's own; esc closes it."""
    await blocked_task(store)
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await until(pilot, lambda: "esc close" in screen_text(app))
        text = screen_text(app)
        for key, what in (("a", "Approve"), ("n", "Next blocked"), ("c", "New task"), (r"\$", "Spend"),
                          ("\\^p", "Find"), ("t", "Log")):
            assert re.search(rf"█ {key} +{what} ", text), what
        assert "t tests   r review   d defects   $ budget" in text
        await pilot.press("escape")
        await pilot.press("enter")  # on the blocked task: the task screen has its own keys
        await until(pilot, lambda: isinstance(app.screen, TaskScreen))
        await pilot.press("question_mark")
        await until(pilot, lambda: "Keys · Task" in screen_text(app))
        for key, what in (("esc", "Back"), ("x", "Stop"), (r"\+", "Budget"), ("p", "Pause")):
            assert re.search(rf"█ {key} +{what} ", screen_text(app)), what


async def test_palette_finds_products_tasks_and_agents_by_name(store, config):
    """ctrl+p: a task's words open it, an agent's name opens its log, a product's name focuses its pane."""
    t1 = await blocked_task(store)
    await new_task(store, "blog", "RSS feed")
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        for typed, check in [("csv export", lambda: isinstance(app.screen, TaskScreen) and app.screen.task_id == t1),
                             ("builder-1", lambda: isinstance(app.screen, AgentLogScreen)),
                             ("product blog", lambda: isinstance(app.screen, MainScreen)
                              and app.focused is main(app).panes["blog"].table)]:
            await pilot.press("ctrl+p")
            await until(pilot, lambda: isinstance(app.screen, CommandPalette))
            await type_text(pilot, typed)
            word = typed.split()[-1]
            await until(pilot, lambda: word in screen_text(app).lower())  # noqa: B023 (used at once)
            await pilot.press("enter")
            await until(pilot, check)


async def test_shift_t_switches_between_the_light_and_dark_themes(store, config):
    await blocked_task(store)
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == DARK and app.current_theme.dark
        await pilot.press("T")
        assert app.theme == LIGHT and not app.current_theme.dark
        # the lights are redrawn in the light theme's colours
        table = main(app).panes["shop"].table
        assert table.get_cell("T1", "tests").style.color.triplet.hex.lower() == app.get_css_variables()["error"].lower()
        await pilot.press("T")
        assert app.theme == DARK


async def test_shift_r_opens_the_rate_screen(store, config):
    from cockpit.tui.screens.rate import RateScreen

    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, RateScreen))
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_toasts_when_a_task_blocks_or_merges(store, config):
    """A task that blocks or lands pops a toast, even while the human looks at another screen."""
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("dollar_sign")
        t1 = await blocked_task(store, "blog", "RSS feed")
        await until(pilot, lambda: any(n.title == "Blocked" for n in app._notifications))
        [toast] = [n for n in app._notifications if n.title == "Blocked"]
        assert toast.message.startswith(f"{t1} (blog) waits for you: tests") and toast.severity == "warning"
        assert isinstance(app.screen, SpendScreen)
        # merged: an override, a tested merge, the merge itself (what the merge queue records)
        await store.append(Event(kind=Kind.OVERRIDE, actor=HUMAN, product="blog", task_id=t1, data={"note": "ok"}))
        await store.append(Event(kind=Kind.VERDICT, actor="system", product="blog", task_id=t1,
                                 data={"gate": "merge", "commit": "m1", "source": "abc1234def", "base": "b0",
                                       "outcome": "pass"}))
        await store.append(Event(kind=Kind.MERGED, actor="system", product="blog", task_id=t1,
                                 data={"merged_commit": "m1"}))
        await until(pilot, lambda: any(n.title == "Merged" for n in app._notifications))
        assert any(n.message == f"{t1}: RSS feed landed on blog." for n in app._notifications)


async def test_a_second_cockpit_on_the_same_factory_watches_instead_of_driving(store, config):
    """Two cockpits (two terminals, two browser tabs) never both drive the agents: the second one watches."""
    runs = []

    class Recording:
        async def run(self):
            runs.append(1)

    first, second = CockpitApp(store, config, orchestrator=Recording()), CockpitApp(store, config, orchestrator=Recording())
    async with first.run_test(size=SIZE) as p1:
        await until(p1, lambda: runs == [1])
        async with second.run_test(size=SIZE) as p2:
            await p2.pause()
            assert second.orchestrator is None and "watching" in second.sub_title
    assert runs == [1]


async def test_the_remaining_keys_do_what_the_footer_says(store, config):
    """Tabs 1, 3 and 4 (gates, defects with their reproduction, the reviewers' words); e and + on the main screen;
    esc closes the form, the rules and the memory screens; n on a confirmation records nothing."""
    t1 = await new_task(store, "shop", "Discounts", budget_usd=2.0)
    await start(store, "shop", t1)
    sha = "feed0001"
    for kind, actor, data in [
        (Kind.COMMITTED, "builder-1", {"sha": sha}), (Kind.SUBMITTED, "builder-1", {}),
        (Kind.VERDICT, "system", {"gate": "tests", "commit": sha, "outcome": "pass", "detail": "9 passed"}),
        (Kind.CHECKED, "system", {}),
        (Kind.DEFECT_OPENED, "breaker-1", {"commit": sha, "title": "150% off makes a negative total", "repro_kind": "command",
                                           "reproduction": "python -c 'assert total(150) >= 0'", "exit_code": 1,
                                           "detail": "AssertionError"}),
        (Kind.CHANGES_REQUESTED, "reviewer-1", {"commit": sha, "note": "shop/discounts.py:12: clamp at zero"}),
    ]:
        await store.append(Event(kind=kind, actor=actor, product="shop", task_id=t1, data=data))
    app = CockpitApp(store, config)
    async with app.run_test(size=SIZE) as pilot:
        main(app).select_task(t1)
        main(app).panes["shop"].table.focus()
        await pilot.pause()
        # + on the main screen: the task's own budget
        await pilot.press("plus")
        await until(pilot, lambda: "its own budget ($2.00)" in screen_text(app))
        await pilot.press("1", "enter")
        await until(pilot, lambda: store.task(t1).budget_usd == 3.0)
        # e on the main screen: the form, prefilled; esc leaves the task as it was
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, TaskForm))
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen) and store.task(t1).title == "Discounts"
        screen = await open_task_screen(pilot, app, t1)
        await pilot.press("3")
        await until(pilot, lambda: "150% off makes a negative total" in screen_text(app))
        assert screen.page == "defects" and "D1 OPEN" in screen_text(app) and "assert total(150) >= 0" in screen_text(app)
        await pilot.press("4")
        await until(pilot, lambda: "reviewer-1: shop/discounts.py:12: clamp at zero" in screen_text(app))
        await pilot.press("1")
        await until(pilot, lambda: "still needs: review, defects" in screen_text(app))
        # x then n: nothing is stopped, nothing recorded
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert isinstance(app.screen, TaskScreen)
        await pilot.press("escape", "u")
        await until(pilot, lambda: isinstance(app.screen, RulesScreen))
        await pilot.press("escape", "m")
        await until(pilot, lambda: isinstance(app.screen, MemoryScreen))
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
    assert await store.events(kinds=[Kind.TASK_EDITED, Kind.AGENT_STOPPED, Kind.REFUSED]) == []
