"""The footer, cut cleanly: on a narrow terminal the keys that do not fit whole are hidden (`?` lists them all).

Textual's Footer lets its last keys run under the command palette key docked on the right ("q ▏^p Finde" at
80 columns). This one measures after each layout and hides every key past the first that would not fit.
"""

from __future__ import annotations

from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class FittedFooter(Footer):
    """A Footer whose keys end at a key's end, never in the middle of one."""

    async def recompose(self) -> None:
        await super().recompose()
        self.call_after_refresh(self._cut)

    def on_resize(self) -> None:
        for key in self.query(FooterKey):
            key.display = True
        self.call_after_refresh(self._cut)

    def _cut(self) -> None:
        keys = list(self.query(FooterKey))
        palette = [k for k in keys if k.has_class("-command-palette")]
        limit = self.region.right - sum(k.outer_size.width for k in palette if k.display)
        cut = False
        for key in keys:
            if key in palette:
                continue
            if not key.region.width and not cut:
                continue  # not laid out yet
            if cut or key.region.right > limit:
                cut = True
                key.display = False
