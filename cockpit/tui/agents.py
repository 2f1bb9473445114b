"""Who is at work, on what, doing what right now: folded from the event stream, no Textual.

The panes show one line per working agent; the palette finds agents by name; `t`
opens an agent's log. All of it reads this board, which the main screen feeds
with every batch from the bridge (and, at start-up, with the agents' lifecycle
events read back from the store).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.events import Event, Kind
from ..factory.agent_log import agent_of
from ..domain import format as fmt

LIFECYCLE_KINDS = (Kind.AGENT_STARTED.value, Kind.AGENT_FINISHED.value, Kind.AGENT_STOPPED.value,
                   Kind.AGENT_PAUSED.value, Kind.AGENT_RESUMED.value)


@dataclass
class AgentState:
    agent: str
    role: str
    product: str | None
    task_id: str | None
    working: bool = True
    paused: bool = False
    line: str = ""  # what it did last, one line
    ts: float = 0.0
    started_ts: float = 0.0


class AgentBoard:
    """Every agent seen, and what it last did; `working(product)` for the panes."""

    def __init__(self) -> None:
        self.agents: dict[str, AgentState] = {}
        self._text: dict[str, str] = {}  # streamed text since the last newline, per agent

    def apply(self, events: list[Event]) -> set[str]:
        """Fold a batch; returns the products whose agents changed."""
        touched: set[str] = set()
        for ev in events:
            agent = agent_of(ev)
            if agent is None:
                continue
            st = self.agents.get(agent)
            if ev.kind == Kind.AGENT_STARTED:
                st = AgentState(agent, str(ev.data.get("role") or agent.rsplit("-", 1)[0]), ev.product, ev.task_id,
                                paused=st.paused if st else False, started_ts=ev.ts)
                self.agents[agent] = st
                self._text.pop(agent, None)
            elif st is None:
                st = AgentState(agent, agent.rsplit("-", 1)[0], ev.product, ev.task_id, working=False, started_ts=ev.ts)
                self.agents[agent] = st
            if ev.kind in (Kind.AGENT_FINISHED, Kind.AGENT_STOPPED):
                st.working = False
            elif ev.kind == Kind.AGENT_PAUSED:
                st.paused = True
            elif ev.kind == Kind.AGENT_RESUMED:
                st.paused = False
            st.product = st.product or ev.product
            st.task_id = st.task_id or ev.task_id
            line = self._line(agent, ev)
            if line:
                st.line, st.ts = line, ev.ts
            if st.product:
                touched.add(st.product)
        return touched

    def _line(self, agent: str, ev: Event) -> str | None:
        if ev.kind == Kind.AGENT_TEXT:
            text = self._text.get(agent, "") + str(ev.data.get("text", ""))
            head, _, rest = text.rpartition("\n")
            self._text[agent] = rest[-400:]
            last = rest.strip() or next((ln.strip() for ln in reversed(head.splitlines()) if ln.strip()), "")
            return f"│ {fmt.one_line(last, 200)}" if last else None
        if ev.kind in (Kind.AGENT_PAUSED, Kind.AGENT_RESUMED):
            return None
        return fmt.describe(ev)

    def working(self, product: str | None = None) -> list[AgentState]:
        """Agents in a session now (of one product), oldest first."""
        out = [a for a in self.agents.values() if a.working and (product is None or a.product == product)]
        return sorted(out, key=lambda a: a.started_ts)

    def of_task(self, task_id: str) -> list[AgentState]:
        return sorted((a for a in self.agents.values() if a.task_id == task_id), key=lambda a: a.started_ts)

    def current_agent(self, task_id: str) -> AgentState | None:
        """The agent to look at for a task: one at work on it now, else the last that was."""
        agents = self.of_task(task_id)
        working = [a for a in agents if a.working]
        return (working or agents or [None])[-1]
