"""The "Needs you" strip follows the blocked tasks in place: a new reason for the same tasks replaces its line, the
human's highlight stays on the task it was on, and the list grows and shrinks as tasks block and are retried.
(It changes only what changed: rebuilding the list under a burst of blocks cost a screen layout each time.)"""

from __future__ import annotations

from cockpit.domain import Kind
from cockpit.tui.app import CockpitApp
from cockpit.tui.widgets.needs_you import NeedsYou
from tui_kit import HUMAN, append, blocked_task, config, screen_text, store, until  # noqa: F401


async def test_the_strip_changes_in_place_and_keeps_the_highlight(store, config):  # noqa: F811
    t1 = await blocked_task(store, title="Add CSV export")
    t2 = await blocked_task(store, product="blog", title="RSS feed", agent="builder-2")
    app = CockpitApp(store, config)
    async with app.run_test(size=(140, 40)) as pilot:
        strip = app.screen.query_one(NeedsYou)
        await until(pilot, lambda: strip.task_ids == [t1, t2])
        strip.focus()
        strip.select_task(t2)
        # t1 retried and blocked again, for another reason: same tasks, new line
        await append(store, Kind.RETRY, HUMAN, "shop", t1, {})
        await append(store, Kind.BLOCKED, "system", "shop", t1, {"reasons": ["budget"], "detail": "over by $0.40"})
        await until(pilot, lambda: "over by $0.40" in screen_text(app))
        assert strip.task_ids == [t1, t2] and strip.option_count == 2
        assert "3 failed, 12 passed" not in str(strip.get_option_at_index(0).prompt)
        assert strip.selected_task_id == t2
        # a third blocks: the list grows, the highlight stays on its task
        t3 = await blocked_task(store, title="Refunds", agent="builder-3")
        await until(pilot, lambda: strip.task_ids == [t1, t2, t3])
        assert strip.selected_task_id == t2 and "Refunds" in screen_text(app)
        # the highlighted one is retried: the highlight goes to the one that took its place
        await append(store, Kind.RETRY, HUMAN, "blog", t2, {})
        await until(pilot, lambda: strip.task_ids == [t1, t3])
        assert strip.selected_task_id == t3
        for t, product in ((t1, "shop"), (t3, "shop")):
            await append(store, Kind.RETRY, HUMAN, product, t, {})
        await until(pilot, lambda: "Nothing needs you" in screen_text(app))
        assert strip.task_ids == [] and strip.disabled and strip.option_count == 1
