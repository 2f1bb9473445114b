"""The row-cached table draws exactly what a table drawn from empty caches draws (cockpit/tui/widgets/row_table.py).

It changes cells and row order without DataTable's global update counter and forgets only the rows that changed
or moved; a row it forgets too few of shows stale text, or carries a stale row index that sends a click to the
wrong task. Random updates (cells of every width, reorders, cursor moves, focus) are drawn both ways and compared
segment by segment, styles and click metadata included. Liveness: with the forgetting switched off, the same
comparison finds the stale lines.
"""

from __future__ import annotations

import random

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region

from cockpit.tui.widgets.row_table import RowCachedTable

COLUMNS = ("id", "state", "light", "note")
STATES = ("queued", "building", "blocked", "reviewing", "done", "[b]x[/b]", "")


class TableApp(App):
    def compose(self) -> ComposeResult:
        yield RowCachedTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(RowCachedTable)
        for key in COLUMNS:
            table.add_column(key, key=key, **({"width": 24} if key == "note" else {}))
        for i in range(12):
            table.add_row(f"T{i}", "queued", Text("●", style="green"), f"note {i}", key=f"T{i}")


def _drawn(table: RowCachedTable) -> list[list[tuple[str, object]]]:
    """The table's lines as (text, style) segments, the style's click metadata included."""
    lines = table.render_lines(Region(0, 0, table.size.width, table.size.height))
    return [[(seg.text, seg.style, seg.style.meta if seg.style else None) for seg in line] for line in lines]


def _step(table: RowCachedTable, rng: random.Random) -> None:
    keys = [row.key.value for row in table.ordered_rows]
    roll = rng.random()
    if roll < 0.55:
        key = rng.choice(keys)
        cells = {"state": rng.choice(STATES), "note": f"{rng.choice(STATES)} {rng.randint(0, 10 ** rng.randint(0, 12))}"}
        if rng.random() < 0.3:
            cells["light"] = Text("●", style=rng.choice(["green", "red", "grey50"]))
        if rng.random() < 0.1:
            cells["id"] = key + "x" * rng.randint(0, 3)
        table.set_cells(key, cells)
    elif roll < 0.85:
        rng.shuffle(keys) if rng.random() < 0.5 else keys.insert(0, keys.pop(rng.randrange(len(keys))))
        table.reorder(keys)
    else:
        table.move_cursor(row=rng.randrange(len(keys)))


async def _compare(seed: int, steps: int, *, forget: bool = True) -> list[str]:
    """Drawn after each step, then drawn again from empty caches: the steps whose lines differ."""
    rng = random.Random(seed)
    differ = []
    app = TableApp()
    async with app.run_test(size=(80, 16)) as pilot:
        table = app.query_one(RowCachedTable)
        table.focus()
        if not forget:  # the defence off: nothing is forgotten (the liveness check)
            table._forget_stale_rows = lambda: table._stale_rows.clear()
        await pilot.pause()
        for step in range(steps):
            for _ in range(rng.randint(1, 4)):
                _step(table, rng)
            await pilot.pause()
            incremental = _drawn(table)
            table.redraw_all()
            if _drawn(table) != incremental:
                differ.append(f"seed {seed} step {step}")
    return differ


@pytest.mark.parametrize("seed", range(6))
async def test_incremental_drawing_equals_drawing_from_scratch(seed: int) -> None:
    assert await _compare(seed, 40) == []


async def test_liveness_without_forgetting_the_changed_rows_the_lines_go_stale() -> None:
    stale = [d for seed in range(2) for d in await _compare(seed, 40, forget=False)]
    assert len(stale) >= 5, stale


async def test_a_wider_value_widens_its_column_and_a_narrower_one_keeps_it() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 16)) as pilot:
        table = app.query_one(RowCachedTable)
        await pilot.pause()
        state = table.columns[next(k for k in table.columns if k.value == "state")]
        assert state.content_width == len("queued")
        table.set_cells("T3", {"state": "reviewing"})
        await pilot.pause()
        assert state.content_width == len("reviewing")
        table.set_cells("T3", {"state": "done"})
        await pilot.pause()
        assert state.content_width == len("reviewing")  # no jumping back and forth
        assert "done" in "".join(seg.text for line in table.render_lines(Region(0, 0, 80, 16)) for seg in line)


async def test_reorder_refuses_a_partial_order() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 16)) as pilot:
        table = app.query_one(RowCachedTable)
        await pilot.pause()
        with pytest.raises(ValueError, match="every row key"):
            table.reorder(["T1", "T0"])
        with pytest.raises(ValueError, match="every row key"):
            table.reorder([f"T{i}" for i in range(12)] + ["T0"])
        assert [r.key.value for r in table.ordered_rows] == [f"T{i}" for i in range(12)]
