"""A table that re-renders only the rows an update touches.

Textual's DataTable keys every render cache (cells, rows, lines) on one update counter: one changed cell, or a
sort, re-renders every visible cell of the table. A product pane under a burst of task events (100 blocks a
second) changed a few rows per batch and paid for all of them, twenty times a second: that, more than anything,
delayed the human's keys on the main screen.

`RowCachedTable` changes cells and row order without touching the counter and forgets the cached renders of
exactly the rows that changed or moved (a cell's render carries its row index, for clicks), just before the
next paint. A column that must widen still re-renders everything, as DataTable does.

It leans on DataTable's private caches (textual is pinned in uv.lock); tests/test_row_table.py renders random
sequences of updates both ways, this one and from empty caches, and fails on the first line that differs.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from textual._two_way_dict import TwoWayDict
from textual.geometry import Region
from textual.render import measure
from textual.strip import Strip
from textual.widgets._data_table import ColumnKey, RowKey, default_cell_formatter

from .text_table import TextTable, as_cell


def _cell_width(console: Console, value: Any) -> int:
    """The width DataTable would measure for `value` in a one-line row."""
    return measure(console, default_cell_formatter(value, wrap=False, height=1), 1)


class RowCachedTable(TextTable):
    """A TextTable with `set_cells` and `reorder`: changes that re-render only the rows they touch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stale_rows: set[RowKey] = set()

    def set_cells(self, row_key: str, cells: dict[str, Any]) -> None:
        """Put `cells` (column key -> value) in the row `row_key`: only that row is drawn again, unless a value is
        wider than its column. A column widens for a wider value and does not narrow again (as for added rows):
        a column that jumps back and forth as tasks change state is harder to read, and every jump redraws
        every cell."""
        key = RowKey(row_key)
        row = self._data[key]
        resized = False
        for column_name, raw in cells.items():
            column_key = ColumnKey(column_name)
            value = as_cell(raw)
            column = self.columns[column_key]
            if column.auto_width and self._widens(column_key, value):
                resized = True
            row[column_key] = value
        if resized:
            self._require_update_dimensions = True  # the table's width
            self.redraw_all()
        else:
            self._stale_rows.add(key)
            self.refresh()

    def _widens(self, column_key: ColumnKey, value: Any) -> bool:
        """Whether `value` is wider than its column; if so the column takes its width."""
        column = self.columns[column_key]
        width = _cell_width(self.app.console, value)
        if width <= column.content_width:
            return False
        column.content_width = width
        return True

    def reorder(self, wanted: list[str]) -> bool:
        """Show the rows in `wanted` order (every row key, once); only the rows that move are drawn again.
        Returns whether anything moved."""
        if [row.key.value for row in self.ordered_rows] == wanted:
            return False
        locations = {RowKey(k): i for i, k in enumerate(wanted)}
        if set(locations) != set(self._row_locations) or len(wanted) != len(locations):
            raise ValueError("reorder needs every row key of the table, each once")
        self._stale_rows |= {k for k, i in locations.items() if self._row_locations.get(k) != i}
        self._row_locations = TwoWayDict(locations)
        self._offset_cache.clear()
        self._ordered_row_cache.clear()
        self.refresh()
        return True

    def redraw_all(self) -> None:
        """Forget every cached render (a column's width changed: every cell is cut anew)."""
        self._update_count += 1
        self._stale_rows.clear()
        self.refresh()

    def _forget_stale_rows(self) -> None:
        stale, self._stale_rows = self._stale_rows, set()
        for cache in (self._cell_render_cache, self._row_render_cache):  # keys start with the row key
            for cache_key in [k for k in cache.keys() if k[0] in stale]:
                cache.discard(cache_key)
        self._row_renderable_cache.clear()  # keyed by row index: cheap to rebuild, no render in it
        self._line_cache.clear()  # built from the row cache: cheap to rebuild

    def render_lines(self, crop: Region) -> list[Strip]:
        if self._stale_rows:
            self._forget_stale_rows()
        return super().render_lines(crop)


__all__ = ["RowCachedTable"]
