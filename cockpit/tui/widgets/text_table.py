"""A DataTable whose cells are text: a `str` cell is never read as markup (issue 18)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from .. import safe


def as_cell(value: Any) -> Any:
    """A str becomes one line of text, shown as written; a Text keeps its styles, its control characters shown."""
    if isinstance(value, str):
        return safe.line(value)
    if isinstance(value, Text):
        return safe.shown(value, one_line=True)
    return value


class TextTable(DataTable):
    """DataTable parses a str cell as markup (`[/]` in a lesson crashed the memory screen; `[@click=…]` in an
    agent's text made a button): every cell that goes in through here is text."""

    def add_row(self, *cells: Any, height: int | None = 1, key: str | None = None,
                label: Any = None) -> Any:
        return super().add_row(*(as_cell(c) for c in cells), height=height, key=key,
                               label=None if label is None else as_cell(label))

    def update_cell(self, row_key: Any, column_key: Any, value: Any, *, update_width: bool = False) -> None:
        super().update_cell(row_key, column_key, as_cell(value), update_width=update_width)

    def update_cell_at(self, coordinate: Any, value: Any, *, update_width: bool = False) -> None:
        super().update_cell_at(coordinate, as_cell(value), update_width=update_width)


__all__ = ["TextTable", "as_cell"]
