"""ctrl+p finds products, tasks and agents by name: a product focuses its pane, a task opens, an agent's log opens."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Protocol

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher
from textual.markup import escape

from ..domain.tasks import TaskState
from ..domain.visible import visible_line
from . import queries

if TYPE_CHECKING:
    from ..config import FactoryConfig
    from ..store import Store


class PaletteHost(Protocol):
    """What the palette needs of its app (CockpitApp is one): what it lists, and where a choice goes. Named
    here, so the palette does not import the app that imports it."""

    store: Store
    config: FactoryConfig

    def focus_product(self, product: str) -> None: ...

    def open_task(self, task_id: str) -> None: ...

    def open_agent_log(self, agent: str) -> None: ...


def highlight(matcher: Matcher, text: str) -> Content:
    """`text` with the letters the query matched highlighted, as text: Matcher.highlight reads it as markup,
    so a task titled `[@click=app.quit]` would become a button that quits."""
    content = Content(text)
    score, offsets = matcher.fuzzy_search.match(matcher.query, text)
    if score:
        for offset in offsets:
            if not text[offset].isspace():
                content = content.stylize(matcher.match_style, offset, offset + 1)
    return content


class CockpitCommands(Provider):
    """Candidates are gathered once per palette opening (products, tasks, agents), then matched as you type."""

    async def startup(self) -> None:
        app: PaletteHost = self.app  # type: ignore[assignment]
        store = app.store
        products = [p.name for p in app.config.products]
        products += [t.product for t in store.tasks() if t.product not in products]
        self.products = list(dict.fromkeys(products))
        self.tasks = store.tasks()
        self.agents = await queries.known_agents(store)

    def _candidates(self):
        app: PaletteHost = self.app  # type: ignore[assignment]
        for name in self.products:
            yield f"product {name}", partial(app.focus_product, name), f"Go to the {name} pane"
        for t in self.tasks:
            yield (visible_line(f"task {t.id} {t.title}"), partial(app.open_task, t.id),
                   f"{t.product} · {t.state.value}" + (" · needs you" if t.state == TaskState.BLOCKED else ""))
        for agent, product, task_id in self.agents:
            yield (f"agent {agent}", partial(app.open_agent_log, agent),
                   f"log of {agent}" + (f" · {task_id} on {product}" if task_id else ""))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help_text in self._candidates():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, highlight(matcher, text), callback, text=text, help=escape(visible_line(help_text)))

    async def discover(self) -> Hits:
        """With nothing typed: what needs the human first, then the products."""
        app: PaletteHost = self.app  # type: ignore[assignment]
        for t in self.tasks:
            if t.state == TaskState.BLOCKED:
                label = visible_line(f"task {t.id} {t.title}")
                yield DiscoveryHit(Content(label), partial(app.open_task, t.id), text=label,
                                   help=escape(visible_line(f"{t.product} · blocked: {', '.join(t.blocked_by)}")))
        for name in self.products:
            yield DiscoveryHit(f"product {name}", partial(app.focus_product, name), help=f"Go to the {name} pane")
