"""What an agent knows before it starts: the rules in force and the lessons recalled for its task.

Glue between the orchestrator and `rules.py` / `store/memory.py`:
- `session_prompt` builds the system prompt (rules, then lessons, then the role) and a
  `refresh` hook the agent loop calls before every model call, so a rule edited mid-session
  is in force from the next call; each call records `rules_hash` (of the rules text it was
  given), `lesson_ids` and `memory_hash`.
- the `remember` tool every role has, and the short lessons turn after a task that needed
  a second round or a human: its builder, with only `remember`, in one turn.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..agents.loop import AgentSession, SessionResult, ToolOutcome
from ..agents.roles import system_prompt
from ..config import FactoryConfig
from ..domain.actors import Role, role_of
from ..domain.errors import Refused
from ..domain.events import Event, Kind
from ..domain.prices import PriceTable
from ..domain.tasks import Task
from ..store import reads
from ..store import Store
from ..store.memory import Lesson, Memory
from .rules import RuleBook, Rules, text_hash
from .rules_watch import RulesWatcher

log = logging.getLogger(__name__)

REFLECTION_MARK = "LESSONS WORTH KEEPING"
REFLECTION_MAX_TURNS = 2

REMEMBER_SPEC: dict[str, Any] = {
    "name": "remember",
    "description": (
        "Record a lesson for the sessions that come after you on this product: something you learned the hard "
        "way that the code, the tests and the rules do not make obvious (a convention, a trap, a command). One or "
        "two sentences, written as an instruction. It is stored with this task as its source and shown to later "
        "agents whose task is about the same thing. A near-duplicate of a known lesson updates it."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "the lesson, e.g. 'Money in ledger is Decimal, rounded "
                                                      "ROUND_HALF_UP; floats fail tests/test_rounding.py.'"},
            "tags": {"type": "array", "items": {"type": "string"}, "description": "a few topic words"},
            "supersedes": {"type": "integer", "description": "id of a lesson (the N of [LN]) this one corrects"},
        },
        "required": ["text"],
    },
}


# --- the remember tool -------------------------------------------------------------------------


async def teaching_event(store: Store, task_id: str) -> int | None:
    """The latest event of the task that taught something: a failed verdict, a send-back, a human's step."""
    found = await reads.last_teaching_event_id(store, task_id)
    if found is not None:
        return found
    task = store.task(task_id)
    return task.last_event_id if task else None


async def remember_from_tool(memory: Memory, store: Store, tool_input: dict[str, Any], *, agent: str, role: str,
                             task_id: str, product: str) -> ToolOutcome:
    """The `remember` tool: the lesson is sourced from this task, its latest commit and what taught it."""
    text = tool_input.get("text")
    if not isinstance(text, str) or not text.strip():
        return ToolOutcome("remember needs text: the lesson itself", is_error=True)
    tags = tool_input.get("tags") or []
    if not isinstance(tags, (list, str)):
        return ToolOutcome("tags must be a list of words", is_error=True)
    supersedes = tool_input.get("supersedes")
    if isinstance(supersedes, str) and supersedes.upper().lstrip("L").isdigit():
        supersedes = int(supersedes.upper().lstrip("L"))
    if supersedes is not None and not isinstance(supersedes, int):
        return ToolOutcome("supersedes must be a lesson id (a number)", is_error=True)
    task = store.task(task_id)
    result = await memory.remember(text, tags=tags, product=product, role=role, source_task=task_id, actor=agent,
                                   source_commit=task.commit if task else None,
                                   source_event=await teaching_event(store, task_id), supersedes=supersedes)
    return ToolOutcome(result.message, is_error=result.action == "refused")


class LessonToolbox:
    """Only `remember`: the toolbox of the short lessons turn after a task."""

    def __init__(self, memory: Memory, store: Store, *, agent: str, role: str, task_id: str, product: str):
        self.memory, self.store = memory, store
        self.agent, self.role, self.task_id, self.product = agent, role, task_id, product

    def names(self) -> set[str]:
        return {"remember"}

    def specs(self) -> list[dict[str, Any]]:
        return [REMEMBER_SPEC]

    async def call(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        if name != "remember":
            return ToolOutcome(f"tool '{name}' is not available in this turn", is_error=True)
        return await remember_from_tool(self.memory, self.store, tool_input, agent=self.agent, role=self.role,
                                        task_id=self.task_id, product=self.product)


# --- prompts -----------------------------------------------------------------------------------


def render_lessons(lessons: list[Lesson]) -> str:
    if not lessons:
        return ""
    lines = [
        "# Lessons from earlier work",
        "Recorded by earlier sessions, each from the task that taught it. They never override the rules above; "
        "if one is wrong here, say so in your note (or call remember with supersedes).",
    ]
    for lesson in lessons:
        text = lesson.text.replace("\n", "\n  ")
        scope = "; every product" if lesson.product is None else ""
        lines.append(f"- [L{lesson.id}] {text} (source: {lesson.source}{scope})")
    return "\n".join(lines)


@dataclass
class SessionPrompt:
    """The system prompt of one session as it starts, and how to rebuild it before each call."""

    system: str
    rules: Rules
    lessons: list[Lesson]
    refresh: Callable[[], Awaitable[tuple[str, dict[str, Any]]]]
    facts: dict[str, Any] = field(default_factory=dict)


def reflection_brief(task: Task, human_steps: list[str]) -> str:
    """The one-turn question after a task that did not go right first time.

    It names the task by id and quotes what sent it back; it does not repeat the title, which is
    what the builder's own brief (and a scripted scenario) keys on."""
    why = []
    if task.rounds:
        why.append(f"it took {task.rounds + 1} rounds")
    if human_steps:
        why.append("a human stepped in (" + "; ".join(human_steps) + ")")
    lines = [f"{REFLECTION_MARK}: task {task.id} on product '{task.product}' is done, but not first time: "
             f"{' and '.join(why) or 'it needed help'}.", "", "What sent it back:"]
    for f in task.feedback[-4:]:
        who, _, text = f.partition(": ")
        text = text.strip()
        lines.append(f"- {who}: {text[:1500]}{' ...' if len(text) > 1500 else ''}")
    lines += [
        "",
        "In this one short turn, call remember(text, tags) once for each lesson (at most 3) that would have got this "
        "right the first time on this product and that its code, tests and rules do not already make obvious. "
        "Write each as an instruction to the next agent: specific (files, commands, conventions), one or two "
        "sentences. If there is nothing worth keeping, reply 'none' and call nothing.",
    ]
    return "\n".join(lines)


# --- the orchestrator's side -------------------------------------------------------------------


class Knowledge:
    """Rules and memory for one factory run."""

    def __init__(self, config: FactoryConfig, store: Store, *, client: Any = None, prices: PriceTable | None = None,
                 simulated: bool = False):
        self.config = config
        self.simulated = simulated  # the client is the offline scripted model: its spend is simulated
        self.store = store
        self.client = client
        self.prices = prices
        products = {}
        for p in config.products:
            products[p.name] = (config.product_path(p.name), p.main_branch)
        self.rules = RuleBook(config.rules_path, products=products, emit=self._emit)
        self.memory = Memory(store, fade_days=config.memory.fade_days)
        self.watcher = RulesWatcher(self.rules)

    def _emit(self, kind: str, data: dict, product: str | None) -> None:
        self.store.post(Event(kind=kind, actor="system", product=product, data=data))

    def start(self) -> None:
        self.watcher.start()

    async def stop(self) -> None:
        await self.watcher.stop()

    async def recall(self, task: Task, role: str | None = None) -> list[Lesson]:
        """The lessons for `role` on `task` (a judge never gets one the task's own builder wrote)."""
        try:
            return await self.memory.recall(f"{task.title}\n{task.body}", product=task.product,
                                            token_budget=self.config.memory.inject_tokens, role=role,
                                            task_id=task.id)
        except sqlite3.Error as e:  # memory is a help, never a reason for a session not to start
            log.warning("recall for %s failed: %s", task.id, e)
            return []

    async def session_prompt(self, *, role: str, agent: str, task: Task) -> SessionPrompt:
        lessons = await self.recall(task, role)
        if lessons:
            await self.memory.mark_used(lesson.id for lesson in lessons)
        lessons_text = render_lessons(lessons)
        memory_facts = {"lesson_ids": [lesson.id for lesson in lessons],
                        "memory_hash": text_hash(lessons_text) if lessons_text else ""}

        async def refresh() -> tuple[str, dict[str, Any]]:
            rules = await self.rules.current(role, task.product)
            system = system_prompt(role=role, agent=agent, product=task.product, rules=rules.text,
                                   lessons=lessons_text)
            return system, {"rules_hash": rules.hash, **memory_facts}

        system, facts = await refresh()
        rules = self.rules.effective(role, task.product)
        return SessionPrompt(system=system, rules=rules, lessons=lessons, refresh=refresh, facts=facts)

    async def human_steps(self, task: Task) -> list[str]:
        kinds = [Kind.SENT_BACK, Kind.RETRY, Kind.OVERRIDE, Kind.CHANGES_REQUESTED, Kind.APPROVED]
        steps = []
        for e in await self.store.events(task_id=task.id, kinds=[k.value for k in kinds]):
            try:
                human = role_of(e.actor) == Role.HUMAN
            except Refused:
                human = False
            if human:
                steps.append(f"{e.actor} {e.kind.split('.')[-1].replace('_', ' ')}")
        return steps

    async def reflect(self, task: Task) -> SessionResult | None:
        """After a task that needed a second round or a human: its builder, one short turn, only `remember`."""
        if self.client is None or self.prices is None:
            return None
        steps = await self.human_steps(task)
        if task.rounds == 0 and not steps and not task.overrides:
            return None
        builder = task.assignee if task.assignee and task.assignee.startswith("builder-") else None
        builder = builder or next((a for a in task.authors if a.startswith("builder-")), None)
        if builder is None:
            return None
        prompt = await self.session_prompt(role="builder", agent=builder, task=task)
        rc = self.config.role("builder")
        session = AgentSession(
            agent=builder, role="builder", product=task.product, task_id=task.id, client=self.client,
            model=rc.model, max_tokens=min(rc.max_tokens, 2048), system=prompt.system,
            toolbox=LessonToolbox(self.memory, self.store, agent=builder, role="builder", task_id=task.id,
                                  product=task.product),
            store=self.store, prices=self.prices, max_turns=REFLECTION_MAX_TURNS,
            rules_hash=prompt.rules.hash, refresh=prompt.refresh, simulated=self.simulated)
        return await session.run(reflection_brief(task, steps))
