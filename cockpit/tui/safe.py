"""Outside text (an agent's, a repository's, a task's, a note's, a lesson's) as screen content: text, never markup.

Textual reads a `str` as markup almost everywhere (a DataTable cell, `notify`, a Static, an Option, a palette
entry's help): `[/]` crashes it (MarkupError) and `[@click=screen.retry]` turns text into a button that acts
as the human. A rich `Text` is never parsed, so everything from outside reaches a widget as one, its control
characters and escape sequences shown (cockpit.domain.visible), never sent to the terminal.
"""

from __future__ import annotations

from rich.text import Text

from ..domain.visible import visible, visible_line


def text(value: object, style: str = "") -> Text:
    """Outside text for a widget: shown as written, never parsed as markup, never obeyed by the terminal."""
    return Text(visible(value), style=style, end="")


def line(value: object, style: str = "") -> Text:
    """As `text`, on one line (a cell, a heading): a newline shows as ⏎."""
    return Text(visible_line(value), style=style, end="")


def shown(value: Text, *, one_line: bool = False) -> Text:
    """A Text built from outside strings, with its control characters made visible (styles kept);
    `one_line`: a newline shows as ⏎ (a cell)."""
    plain = (visible_line if one_line else visible)(value.plain)
    if plain == value.plain:
        return value
    out = value.copy()
    out.plain = plain
    return out


def plain(value: object) -> str:
    """For an API that takes plain text only (a notification with markup=False, a Log line)."""
    return visible(value)


__all__ = ["text", "line", "shown", "plain"]
