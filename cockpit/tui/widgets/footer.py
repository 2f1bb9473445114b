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
        if not self.is_attached:
            return
        keys = list(self.query(FooterKey))
        palette = [k for k in keys if k.has_class("-command-palette")]
        first = next((k for k in keys if k not in palette and k.display), None)
        if first is None:
            return
        if not self.screen.is_current or not self.region.width or not first.region.width:
            # recomposed while its screen was covered, or not laid out yet: measure once it is drawn
            self.set_timer(0.25, self._cut, name="fit footer")
            return
        limit = self.region.right - sum(k.outer_size.width for k in palette if k.display)
        cut = False
        for key in keys:
            if key in palette:
                continue
            # a key scrolled wholly out of sight has no region: it does not fit either
            if cut or not key.region.width or key.region.right > limit:
                cut = True
                key.display = False
