"""The memory: lessons one session learned, for the next session to start from.

Lessons live in the store (`lessons` + the FTS5 index `lessons_fts`, migration 2) and
every change to one is an event appended with its SQL in the same transaction, so the
log says who taught, edited, pinned or deleted what. What this module guarantees:

- No unsourced lesson: each names the task (and commit, and the event: usually the
  verdict) that taught it. The table refuses a lesson without a task.
- A deleted lesson never comes back by itself: deletion is a tombstone, and a lesson with the
  same normalized text, or a near-duplicate of it, is refused, whether remembered or imported
  (a trigger backs this up in SQL). Only a human's `restore`, on record, lifts it.
- Hygiene: a near-duplicate (token Jaccard >= 0.8) of a lesson in the same scope updates
  it instead of adding another; a lesson may supersede another; lessons unused for
  `fade_days` stop being recalled (pinned ones never fade); a human can edit, pin, delete.
- Recall: bm25 over the task's title and body, the product's lessons and the global ones,
  pinned lessons first, within a token budget; only lessons for the recalling role (a lesson is for
  its writer's role unless it says otherwise; a human's is for every role), and never a lesson the
  task's own builder wrote to that task's reviewer or breaker (it could be written to sway them).
- A human's word stands: a pinned or human-written lesson changes only by a human hand. An agent's
  near-duplicate of one leaves it as it is; an agent's supersede of one becomes a proposal
  (`memory.proposed`) the human accepts or rejects (the memory screen, `a`/`x`).

Export/import is markdown, one file per product (`_global.md` for global lessons), stable
and diff-friendly, so `memory/` can live in git.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ..domain.actors import Role, role_of
from ..domain.errors import Refused
from ..domain.events import Event, Kind
from .store import NEW_ID, Store

NEAR_DUPLICATE = 0.8
MAX_TEXT = 1200
MAX_TAGS = 8
GLOBAL_FILE = "_global.md"


def _whose(lesson: "Lesson") -> str:
    return "pinned" if lesson.pinned else "a human's lesson"


JUDGES = ("reviewer", "breaker")
"""Roles that judge a task's work: a lesson its own builder wrote never reaches them on that task."""


def is_human(actor: str) -> bool:
    try:
        return role_of(actor) == Role.HUMAN
    except Refused:
        return False

_COLS = ("id, text, product, role, tags, source_task, source_commit, source_event, source_actor, created_ts, "
         "updated_ts, last_used_ts, use_count, superseded_by, pinned, deleted, fingerprint")
_WORD = re.compile(r"[a-z0-9]+")
_TAG = re.compile(r"[^a-z0-9_.-]+")
# words that say nothing about what a lesson is about; kept out of fingerprints and queries
# (never a negation or a modal: "must not reject" and "must reject" are opposite lessons, not near-duplicates)
_STOP = frozenset("""a an and are as at be been but by for from had has have if in into is it its
of on or so than that the their then there these this those to too was were what when where which while who
with you your we our i me my use used using""".split())


# --- text ------------------------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    """Lower-case words without the filler: what near-duplicate checks and fingerprints compare."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def fingerprint(text: str) -> str:
    return hashlib.sha256(" ".join(tokens(text)).encode()).hexdigest()[:32]


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    sa, sb = set(a), set(b)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def normalize_text(text: str) -> str:
    """Trimmed lines; NULs dropped (SQLite's length() stops at one, so a lesson that began with one failed the
    table's check and the write: found by tests/test_hostile_text_property.py)."""
    return "\n".join(line.rstrip() for line in str(text).replace("\x00", "").strip().splitlines()).strip()


def normalize_tags(tags: Iterable[Any] | str | None) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):
        tags = re.split(r"[,\s]+", tags)
    out: list[str] = []
    for t in tags:
        tag = _TAG.sub("-", str(t).strip().lower()).strip("-.")
        if tag and tag not in out:
            out.append(tag)
    return tuple(out[:MAX_TAGS])


def fts_query(text: str, max_terms: int = 24) -> str | None:
    """An FTS5 OR-query of the distinct meaningful words of `text` (None: nothing to search for)."""
    seen: list[str] = []
    for w in tokens(text):
        if len(w) >= 3 and w not in seen and not w.isdigit():
            seen.append(w)
        if len(seen) >= max_terms:
            break
    if not seen:
        return None
    return " OR ".join(f'"{w}"' for w in seen)


def scope_match(product: str | None) -> str:
    """The FTS5 filter for a product's lessons and the global ones (None: the global ones alone);
    the `scope` column holds one token per product (schema migration 2)."""
    if product is None:
        return 'scope : "sg"'
    return f'scope : ("s{product.encode().hex().upper()}" OR "sg")'


def lesson_tokens(text: str) -> int:
    """What a lesson costs of the recall budget (`memory.inject_tokens`): a quarter of its characters, plus 8 for
    the line that frames it in the prompt."""
    return math.ceil(len(text) / 4) + 8


# --- lessons -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lesson:
    id: int
    text: str
    product: str | None
    role: str | None
    tags: tuple[str, ...]
    source_task: str
    source_commit: str | None
    source_event: int | None
    source_actor: str
    created_ts: float
    updated_ts: float
    last_used_ts: float | None
    use_count: int
    superseded_by: int | None
    pinned: bool
    deleted: bool
    fingerprint: str
    score: float | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...], score: float | None = None) -> "Lesson":
        (id_, text, product, role, tags, task, commit, event, actor, created, updated, used, count, sup, pinned,
         deleted, fp) = row[:17]
        return cls(id=id_, text=text, product=product, role=role, tags=tuple(tags.split()) if tags else (),
                   source_task=task, source_commit=commit, source_event=event, source_actor=actor,
                   created_ts=created, updated_ts=updated, last_used_ts=used, use_count=count, superseded_by=sup,
                   pinned=bool(pinned), deleted=bool(deleted), fingerprint=fp, score=score)

    @property
    def fresh_ts(self) -> float:
        return max(self.created_ts, self.updated_ts, self.last_used_ts or 0.0)

    def faded(self, now: float, fade_days: float) -> bool:
        return not self.pinned and self.fresh_ts < now - fade_days * 86400

    @property
    def source(self) -> str:
        """Who taught it, on which task and commit: `builder-2 on T7@1a2b3c4d5e6f event 41`."""
        where = self.source_task + (f"@{self.source_commit[:12]}" if self.source_commit else "")
        return f"{self.source_actor} on {where}" + (f" event {self.source_event}" if self.source_event else "")

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles it is for (the `role` column, comma-separated); empty: every role."""
        return tuple(r for r in (self.role or "").split(",") if r)

    def for_role(self, role: str) -> bool:
        return not self.roles or role in self.roles

    @property
    def human_written(self) -> bool:
        return is_human(self.source_actor)

    @property
    def protected(self) -> bool:
        """Pinned or written by a human: only a human changes it."""
        return self.pinned or self.human_written

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tags"] = list(self.tags)
        return d


@dataclass(frozen=True)
class Remembered:
    """What `remember` did: added a lesson, updated a near-duplicate, found it known, or refused it."""

    action: Literal["added", "updated", "known", "refused"]
    lesson_id: int | None
    message: str


@dataclass(frozen=True)
class Proposal:
    """An agent proposed that `superseded_by` replace `lesson_id`, a lesson only a human may retire."""

    id: int  # the event that proposed it
    lesson_id: int
    superseded_by: int
    actor: str
    task_id: str | None
    ts: float


@dataclass
class ImportReport:
    added: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # why, one line each


class Memory:
    """Lessons in one factory's store. All writes go through the store's single writer."""

    def __init__(self, store: Store, *, fade_days: float = 60.0, clock=time.time):
        self.store = store
        self.fade_days = fade_days
        self.clock = clock
        self._lock = asyncio.Lock()

    # --- reading ---------------------------------------------------------------------------

    async def get(self, lesson_id: int) -> Lesson | None:
        rows = await self.store.query(f"SELECT {_COLS} FROM lessons WHERE id = ?", (int(lesson_id),))
        return Lesson.from_row(rows[0]) if rows else None

    async def lessons(self, *, product: str | None | Literal["*"] = "*", include_deleted: bool = False) -> list[Lesson]:
        """Every lesson (of one scope: a product name, None for global ones; '*' for all), by id."""
        where, params = [], []
        if product != "*":
            where.append("product IS ?")
            params.append(product)
        if not include_deleted:
            where.append("deleted = 0")
        q = f"SELECT {_COLS} FROM lessons" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        return [Lesson.from_row(r) for r in await self.store.query(q, tuple(params))]

    async def search(self, query: str, *, product: str | None | Literal["*"] = "*", limit: int = 20,
                     include_faded: bool = True) -> list[Lesson]:
        """Lessons matching `query` best first (bm25), live ones only; `product` adds its global ones."""
        q = fts_query(query)
        if q is None:
            return []
        where = ["lessons_fts MATCH ?", "l.deleted = 0", "l.superseded_by IS NULL"]
        params: list[Any] = [q]
        if product != "*":
            # filtered inside the index: only this scope's matches are ranked
            params[0] = f"({q}) AND {scope_match(product)}"
            where.append("(l.product = ? OR l.product IS NULL)")
            params.append(product)
        if not include_faded:
            where.append("(l.pinned = 1 OR MAX(l.created_ts, l.updated_ts, COALESCE(l.last_used_ts, 0)) >= ?)")
            params.append(self.clock() - self.fade_days * 86400)
        cols = ", ".join(f"l.{c.strip()}" for c in _COLS.split(","))
        sql = (f"SELECT {cols}, bm25(lessons_fts, 1.0, 1.0, 0.0) AS score FROM lessons_fts "
               "JOIN lessons l ON l.id = lessons_fts.rowid "
               f"WHERE {' AND '.join(where)} ORDER BY score LIMIT ?")
        params.append(int(limit))
        return [Lesson.from_row(r, score=r[17]) for r in await self.store.query(sql, tuple(params))]

    async def recall(self, query: str, *, product: str | None, limit: int = 10,
                     token_budget: int | None = None, role: str | None = None,
                     task_id: str | None = None) -> list[Lesson]:
        """The lessons to put in front of an agent: pinned ones of the scope first, then the best bm25
        matches of `query`, leaving out faded, superseded and deleted ones, within `token_budget`.

        `role`: only lessons for that role. `task_id` with a judging role (reviewer, breaker): never a lesson an
        agent wrote from that very task (its builder could write one to sway its judges)."""

        def fits(lesson: Lesson) -> bool:
            if role is not None and not lesson.for_role(role):
                return False
            return not (role in JUDGES and task_id is not None and lesson.source_task == task_id
                        and not lesson.human_written)

        pinned_rows = await self.store.query(
            f"SELECT {_COLS} FROM lessons INDEXED BY lessons_pinned WHERE pinned = 1 AND deleted = 0 "
            "AND superseded_by IS NULL "
            "AND (product = ? OR product IS NULL) ORDER BY id LIMIT ?", (product, limit * 4))
        chosen = [lesson for lesson in map(Lesson.from_row, pinned_rows) if fits(lesson)][:limit]
        if len(chosen) < limit:
            ids = {lesson.id for lesson in chosen}
            for lesson in await self.search(query, product=product, limit=limit * 4, include_faded=False):
                if lesson.id not in ids and len(chosen) < limit and fits(lesson):
                    chosen.append(lesson)
        if token_budget is None:
            return chosen
        out, used = [], 0
        for lesson in chosen:
            cost = lesson_tokens(lesson.text)
            if used + cost <= token_budget:
                out.append(lesson)
                used += cost
        return out

    async def mark_used(self, lesson_ids: Iterable[int]) -> None:
        """Recalled lessons stay fresh; unused ones fade."""
        ids = sorted({int(i) for i in lesson_ids})
        if not ids:
            return
        await self.store.submit(None, sql=[(
            f"UPDATE lessons SET last_used_ts = ?, use_count = use_count + 1 WHERE id IN ({','.join('?' * len(ids))})",
            (self.clock(), *ids))])

    async def _candidates(self, text: str, product: str | None) -> list[Lesson]:
        """Lessons that may be near-duplicates of `text`, deleted ones included."""
        q = fts_query(text, max_terms=40)
        fp = fingerprint(text)
        rows = await self.store.query(f"SELECT {_COLS} FROM lessons WHERE fingerprint = ?", (fp,))
        found = {r[0]: Lesson.from_row(r) for r in rows}
        if q is not None:
            cols = ", ".join(f"l.{c.strip()}" for c in _COLS.split(","))
            rows = await self.store.query(
                f"SELECT {cols} FROM lessons_fts JOIN lessons l ON l.id = lessons_fts.rowid WHERE lessons_fts MATCH ? "
                "AND (l.product IS ? OR l.product IS NULL) ORDER BY bm25(lessons_fts, 1.0, 1.0, 0.0) LIMIT 30",
                (f"({q}) AND {scope_match(product)}", product))
            for r in rows:
                found.setdefault(r[0], Lesson.from_row(r))
        return list(found.values())

    async def near_duplicate(self, text: str, product: str | None) -> tuple[Lesson, float] | None:
        """The closest lesson in `product`'s scope (or global) at Jaccard >= NEAR_DUPLICATE; deleted ones count."""
        toks = tokens(text)
        fp = fingerprint(text)
        best: tuple[Lesson, float] | None = None
        for lesson in await self._candidates(text, product):
            score = 1.0 if lesson.fingerprint == fp else jaccard(toks, tokens(lesson.text))
            if score >= NEAR_DUPLICATE and (best is None or (score, lesson.deleted) > (best[1], best[0].deleted)):
                best = (lesson, score)
        return best

    # --- writing ---------------------------------------------------------------------------

    async def _write(self, kind: str, actor: str, data: dict[str, Any], sql: list[tuple[str, tuple[Any, ...]]],
                     *, product: str | None = None, task_id: str | None = None, new_lesson: bool = False) -> Event:
        """One change, its event and its SQL in one transaction. `new_lesson`: NEW_ID in the SQL is the new
        lesson's id, assigned by the store under the write lock (two processes never take the same one)."""
        return await self.store.append(Event(kind=kind, actor=actor, product=product, task_id=task_id, data=data),
                                       sql=sql, new_id=("lessons", "lesson_id") if new_lesson else None)

    async def remember(self, text: str, *, tags: Iterable[str] | str | None = (), product: str | None,
                       role: str | None, source_task: str | None, actor: str, source_commit: str | None = None,
                       source_event: int | None = None, supersedes: int | None = None) -> Remembered:
        """Add a lesson, or update its near-duplicate; refused if unsourced or once deleted."""
        text = normalize_text(text)
        tag_t = normalize_tags(tags)
        if not text:
            return Remembered("refused", None, "a lesson needs text")
        if len(text) > MAX_TEXT:
            return Remembered("refused", None, f"a lesson is one or two sentences ({len(text)} characters; keep it "
                                               f"under {MAX_TEXT}): split it or say it shorter")
        if not source_task or not str(source_task).strip():
            return Remembered("refused", None, "no unsourced lesson: a lesson names the task that taught it")
        if not tokens(text):
            return Remembered("refused", None, "a lesson needs words that say something")
        async with self._lock:
            old: Lesson | None = None
            if supersedes is not None:
                old = await self.get(supersedes)
                if old is None or old.deleted:
                    return Remembered("refused", None, f"no lesson L{supersedes} to supersede")
                if old.product != product:
                    return Remembered("refused", None, f"L{supersedes} is not a lesson of this product; only a human "
                                                       "may supersede it")
            near = await self.near_duplicate(text, product)
            if near is not None and (old is None or near[0].id != old.id):
                lesson, _ = near
                if lesson.deleted:
                    return Remembered("refused", lesson.id, f"a human deleted a lesson like this (L{lesson.id}); it is "
                                                            "not recorded again")
                if lesson.superseded_by is not None:
                    return Remembered("refused", lesson.id, f"L{lesson.id} said this and was superseded by "
                                                            f"L{lesson.superseded_by}; not recorded again")
                if lesson.product != product:
                    return Remembered("known", lesson.id, f"already known as global lesson L{lesson.id}")
                if lesson.protected and not is_human(actor):
                    return Remembered("known", lesson.id, f"L{lesson.id} says this already; it is {_whose(lesson)}, "
                                                          "so only a human changes it")
                if not is_human(actor) and lesson.source_actor != actor:
                    # an agent never rewrites another's lesson: its role and source would keep vouching for
                    # words they never said (a builder's text served to reviewers as a reviewer's: C-06)
                    return Remembered("known", lesson.id, f"L{lesson.id} ({lesson.source_actor}'s) says nearly this "
                                                          "already; it stays as its author wrote it")
                merged = normalize_tags([*lesson.tags, *tag_t])
                new_text = lesson.text if lesson.pinned else text  # a pinned lesson's wording is the human's
                now = self.clock()
                await self._write(Kind.MEMORY_UPDATED, actor, {
                    "lesson_id": lesson.id, "text": new_text, "tags": list(merged), "reason": "near-duplicate",
                    "source_task": source_task, "source_commit": source_commit, "source_event": source_event},
                    [("UPDATE lessons SET text = ?, tags = ?, fingerprint = ?, updated_ts = ? WHERE id = ?",
                      (new_text, " ".join(merged), fingerprint(new_text), now, lesson.id))],
                    product=product, task_id=source_task)
                return Remembered("updated", lesson.id, f"updated L{lesson.id}, which said nearly the same")
            now = self.clock()
            sql: list[tuple[str, tuple[Any, ...]]] = [(
                f"INSERT INTO lessons({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (NEW_ID, text, product, role, " ".join(tag_t), source_task, source_commit, source_event, actor,
                 now, now, None, 0, None, 0, 0, fingerprint(text)))]
            data: dict[str, Any] = {"text": text, "tags": list(tag_t), "role": role,
                                    "source_task": source_task, "source_commit": source_commit,
                                    "source_event": source_event}
            propose = old is not None and old.protected and not is_human(actor)
            if old is not None and not propose:
                sql.append(("UPDATE lessons SET superseded_by = ?, updated_ts = ? WHERE id = ?", (NEW_ID, now, old.id)))
                data["supersedes"] = old.id
            ev = await self._write(Kind.MEMORY_REMEMBERED, actor, data, sql, product=product, task_id=source_task,
                                   new_lesson=True)
            lesson_id = int(ev.data["lesson_id"])
            extra = f"; it supersedes L{old.id}" if old is not None and not propose else ""
            if propose:
                assert old is not None
                await self._write(Kind.MEMORY_PROPOSED, actor, {"lesson_id": old.id, "superseded_by": lesson_id},
                                  [], product=product, task_id=source_task)
                extra = (f"; L{old.id} is {_whose(old)}: that it be superseded is proposed to the human, and it "
                         "stays in force until they accept")
            return Remembered("added", lesson_id, f"remembered as L{lesson_id}{extra}")

    @staticmethod
    def _human_only(actor: str, what: str) -> None:
        """Editing, pinning, deleting and superseding are a human's: an agent proposes (see `remember`)."""
        if not is_human(actor):
            raise Refused(f"{what}: only a human may do this ({actor} is not one); an agent proposes instead")

    async def proposals(self) -> list[Proposal]:
        """Supersedes agents proposed of lessons only a human may retire, not yet accepted or rejected."""
        events = await self.store.events(kinds=[Kind.MEMORY_PROPOSED, Kind.MEMORY_SUPERSEDED, Kind.MEMORY_REJECTED])
        decided = {int(e.data["proposal"]) for e in events if e.kind != Kind.MEMORY_PROPOSED and e.data.get("proposal")}
        return [Proposal(id=int(e.id or 0), lesson_id=int(e.data["lesson_id"]),
                         superseded_by=int(e.data["superseded_by"]), actor=e.actor, task_id=e.task_id, ts=e.ts)
                for e in events if e.kind == Kind.MEMORY_PROPOSED and e.id not in decided]

    async def decide(self, proposal_id: int, *, actor: str, accept: bool) -> None:
        """The human accepts (the lesson is superseded) or rejects (it stays) an agent's proposal."""
        self._human_only(actor, "accept or reject a proposal")
        found = next((p for p in await self.proposals() if p.id == proposal_id), None)
        if found is None:
            raise Refused(f"no open proposal {proposal_id}")
        if accept:
            await self.supersede(found.lesson_id, found.superseded_by, actor=actor, proposal=found.id)
            return
        async with self._lock:
            await self._write(Kind.MEMORY_REJECTED, actor, {"proposal": found.id, "lesson_id": found.lesson_id,
                                                            "superseded_by": found.superseded_by}, [])

    async def _require(self, lesson_id: int) -> Lesson:
        lesson = await self.get(lesson_id)
        if lesson is None:
            raise Refused(f"no lesson L{lesson_id}")
        if lesson.deleted:
            raise Refused(f"L{lesson_id} was deleted; a deleted lesson never comes back")
        return lesson

    async def edit(self, lesson_id: int, *, actor: str, text: str | None = None,
                   tags: Iterable[str] | str | None = None) -> Lesson:
        self._human_only(actor, f"edit L{lesson_id}")
        async with self._lock:
            lesson = await self._require(lesson_id)
            new_text = normalize_text(text) if text is not None else lesson.text
            if not new_text or not tokens(new_text):
                raise Refused("a lesson needs text")
            new_tags = normalize_tags(tags) if tags is not None else lesson.tags
            await self._write(Kind.MEMORY_UPDATED, actor, {"lesson_id": lesson.id, "text": new_text, "tags": list(new_tags),
                                                           "reason": "edited"},
                              [("UPDATE lessons SET text = ?, tags = ?, fingerprint = ?, updated_ts = ? WHERE id = ?",
                                (new_text, " ".join(new_tags), fingerprint(new_text), self.clock(), lesson.id))],
                              product=lesson.product)
        return await self._require(lesson_id)

    async def pin(self, lesson_id: int, *, actor: str, pinned: bool = True) -> Lesson:
        self._human_only(actor, f"pin L{lesson_id}")
        async with self._lock:
            lesson = await self._require(lesson_id)
            await self._write(Kind.MEMORY_PINNED, actor, {"lesson_id": lesson.id, "pinned": pinned},
                              [("UPDATE lessons SET pinned = ?, updated_ts = ? WHERE id = ?",
                                (int(pinned), self.clock(), lesson.id))], product=lesson.product)
        return await self._require(lesson_id)

    async def delete(self, lesson_id: int, *, actor: str) -> None:
        """Tombstone a lesson: it leaves recall for good, and its text can never be remembered again."""
        self._human_only(actor, f"delete L{lesson_id}")
        async with self._lock:
            lesson = await self._require(lesson_id)
            await self._write(Kind.MEMORY_DELETED, actor, {"lesson_id": lesson.id, "fingerprint": lesson.fingerprint},
                              [("UPDATE lessons SET deleted = 1, pinned = 0, updated_ts = ? WHERE id = ?",
                                (self.clock(), lesson.id))], product=lesson.product)

    async def restore(self, lesson_id: int, *, actor: str) -> Lesson:
        """Lift a human's delete (a stray key, a change of mind): the lesson is recalled again, on record.

        Only a `memory.restored` event appended in the same transaction lifts the tombstone (a trigger
        ignores any other write that tries); agents have no tool that calls this."""
        self._human_only(actor, f"restore L{lesson_id}")
        async with self._lock:
            lesson = await self.get(lesson_id)
            if lesson is None:
                raise Refused(f"no lesson L{lesson_id}")
            if not lesson.deleted:
                raise Refused(f"L{lesson_id} is not deleted")
            if lesson.text == "(deleted)" and not lesson.tags:
                raise Refused(f"L{lesson_id} came deleted from an import: its text is not here to restore")
            await self._write(Kind.MEMORY_RESTORED, actor, {"lesson_id": lesson.id, "text": lesson.text},
                              [("UPDATE lessons SET deleted = 0, updated_ts = ? WHERE id = ?",
                                (self.clock(), lesson.id))], product=lesson.product)
        restored = await self.get(lesson_id)
        if restored is None or restored.deleted:  # pragma: no cover - the trigger and this write disagree
            raise Refused(f"L{lesson_id} could not be restored")
        return restored

    async def supersede(self, old_id: int, new_id: int, *, actor: str, proposal: int | None = None) -> None:
        self._human_only(actor, f"supersede L{old_id}")
        async with self._lock:
            old, new = await self._require(old_id), await self._require(new_id)
            if old.id == new.id:
                raise Refused("a lesson cannot supersede itself")
            if new.superseded_by is not None:
                raise Refused(f"L{new.id} is itself superseded by L{new.superseded_by}")
            data: dict[str, Any] = {"lesson_id": old.id, "superseded_by": new.id}
            if proposal is not None:
                data["proposal"] = proposal
            await self._write(Kind.MEMORY_SUPERSEDED, actor, data,
                              [("UPDATE lessons SET superseded_by = ?, updated_ts = ? WHERE id = ?",
                                (new.id, self.clock(), old.id))], product=old.product)

    # --- markdown export / import -------------------------------------------------------------

    async def export_markdown(self, directory: Path) -> list[Path]:
        """One file per product (`_global.md` for global lessons); stable order, so diffs stay small."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        everything = await self.lessons(include_deleted=True)
        scopes = sorted({lesson.product for lesson in everything}, key=lambda p: (p is not None, p or ""))
        written = []
        for scope in scopes:
            path = directory / (GLOBAL_FILE if scope is None else f"{scope}.md")
            path.write_text(render_markdown(scope, [lesson for lesson in everything if lesson.product == scope]))
            written.append(path)
        return written

    async def import_markdown(self, directory: Path, *, actor: str) -> ImportReport:
        """Read an export back. Deleted lessons stay deleted (and tombstones in the files are applied);
        a lesson without a source task is skipped; near-duplicates update instead of adding."""
        report = ImportReport()
        directory = Path(directory)
        files = sorted(directory.glob("*.md")) if directory.is_dir() else []
        parsed: list[tuple[str | None, ParsedLesson]] = []
        tombstones: list[tuple[str | None, ParsedTombstone]] = []
        for f in files:
            scope = None if f.name == GLOBAL_FILE else f.stem
            lessons, stones, problems = parse_markdown(f.read_text(encoding="utf-8"), str(f))
            report.skipped.extend(problems)
            parsed.extend((scope, pl) for pl in lessons)
            tombstones.extend((scope, t) for t in stones)
        id_map: dict[int, int] = {}
        async with self._lock:
            for scope, t in tombstones:
                await self._import_tombstone(scope, t, actor, report)
            for scope, pl in parsed:
                await self._import_lesson(scope, pl, actor, report, id_map)
            for scope, pl in parsed:  # supersession after every lesson has its id here
                if pl.superseded_by is None or pl.id not in id_map:
                    continue
                new = id_map.get(pl.superseded_by)
                here = await self.get(id_map[pl.id])
                if new is None or here is None or here.superseded_by == new or here.deleted:
                    continue
                await self._write(Kind.MEMORY_SUPERSEDED, actor, {"lesson_id": here.id, "superseded_by": new, "via": "import"},
                                  [("UPDATE lessons SET superseded_by = ? WHERE id = ?", (new, here.id))],
                                  product=scope)
        return report

    async def _import_tombstone(self, scope: str | None, t: "ParsedTombstone", actor: str, report: ImportReport) -> None:
        rows = await self.store.query(f"SELECT {_COLS} FROM lessons WHERE fingerprint = ?", (t.fingerprint,))
        existing = [Lesson.from_row(r) for r in rows]
        if any(lesson.deleted for lesson in existing):
            return
        live = [lesson for lesson in existing if not lesson.deleted]
        now = self.clock()
        for lesson in live:
            await self._write(Kind.MEMORY_DELETED, actor, {"lesson_id": lesson.id, "fingerprint": t.fingerprint, "via": "import"},
                              [("UPDATE lessons SET deleted = 1, pinned = 0, updated_ts = ? WHERE id = ?",
                                (now, lesson.id))], product=lesson.product)
            report.deleted.append(lesson.id)
        if not live:
            own = t.id > 0 and await self.get(t.id) is None  # the file's id where it is free, else the next one
            ev = await self._write(Kind.MEMORY_DELETED, actor, {"lesson_id": t.id if own else None, "fingerprint": t.fingerprint,
                                                                "via": "import"},
                                   [(f"INSERT INTO lessons({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                     (t.id if own else NEW_ID, "(deleted)", scope, None, "", t.source_task, None,
                                      None, actor, t.created_ts or now, now, None, 0, None, 0, 1, t.fingerprint))],
                                   product=scope, new_lesson=not own)
            report.deleted.append(int(ev.data["lesson_id"]))

    async def _import_lesson(self, scope: str | None, pl: "ParsedLesson", actor: str, report: ImportReport,
                             id_map: dict[int, int]) -> None:
        label = f"{pl.where}: L{pl.id}"
        if not pl.source_task:
            report.skipped.append(f"{label}: names no source task (no unsourced lesson)")
            return
        text = normalize_text(pl.text)
        if not text or not tokens(text):
            report.skipped.append(f"{label}: no text")
            return
        same = await self.get(pl.id)
        if same is not None and same.source_task == pl.source_task and int(same.created_ts) == int(pl.created_ts):
            id_map[pl.id] = same.id
            if same.deleted:
                report.skipped.append(f"{label}: deleted here; a deleted lesson never comes back")
                return
            # the same lesson: the file is what a person may have edited, so it wins
            await self._merge_into(same, text, pl.tags, pl.pinned, pl, actor, report)
            return
        near = await self.near_duplicate(text, scope)
        if near is not None:
            lesson = near[0]
            id_map[pl.id] = lesson.id
            if lesson.deleted:
                report.skipped.append(f"{label}: like deleted lesson L{lesson.id}; a deleted lesson never comes back")
                return
            if lesson.product != scope:
                report.unchanged.append(lesson.id)
                return
            await self._merge_into(lesson, lesson.text if lesson.pinned else text,
                                   normalize_tags([*lesson.tags, *pl.tags]), lesson.pinned or pl.pinned, pl, actor,
                                   report)
            return
        own = same is None and pl.id > 0  # the file's id where it is free, else the next one
        now = self.clock()
        ev = await self._write(Kind.MEMORY_IMPORTED, actor, {"lesson_id": pl.id if own else None, "text": text,
                                                             "tags": list(pl.tags), "source_task": pl.source_task,
                                                             "from": pl.where},
                               [(f"INSERT INTO lessons({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                 (pl.id if own else NEW_ID, text, scope, pl.role, " ".join(pl.tags), pl.source_task,
                                  pl.source_commit, pl.source_event, pl.source_actor or actor, pl.created_ts or now,
                                  pl.updated_ts or now, pl.last_used_ts, pl.use_count, None, int(pl.pinned), 0,
                                  fingerprint(text)))],
                               product=scope, task_id=pl.source_task, new_lesson=not own)
        lesson_id = int(ev.data["lesson_id"])
        id_map[pl.id] = lesson_id
        report.added.append(lesson_id)

    async def _merge_into(self, lesson: Lesson, text: str, tags: tuple[str, ...], pinned: bool,
                          pl: "ParsedLesson", actor: str, report: ImportReport) -> None:
        used = max(lesson.last_used_ts or 0, pl.last_used_ts or 0) or None
        count = max(lesson.use_count, pl.use_count)
        if (text, tags, pinned, used, count) == (lesson.text, lesson.tags, lesson.pinned, lesson.last_used_ts,
                                                 lesson.use_count):
            report.unchanged.append(lesson.id)
            return
        await self._write(Kind.MEMORY_UPDATED, actor,
                          {"lesson_id": lesson.id, "text": text, "tags": list(tags), "reason": "import"},
                          [("UPDATE lessons SET text = ?, tags = ?, fingerprint = ?, pinned = ?, last_used_ts = ?, "
                            "use_count = ? WHERE id = ?",
                            (text, " ".join(tags), fingerprint(text), int(pinned), used, count, lesson.id))],
                          product=lesson.product)
        report.updated.append(lesson.id)


# --- the markdown format -------------------------------------------------------------------------

_HEADER_NOTE = (
    "<!-- Written by `cockpit memory export`, read back by `cockpit memory import`. Edit a lesson's text\n"
    "     freely; keep its `lesson:` line. A lesson names the task that taught it: one without `task=` is\n"
    "     not imported. A deleted lesson is listed under Deleted and never comes back. -->"
)
_META = re.compile(r"^<!--\s*lesson:\s*(.*?)\s*-->\s*$")
_ENTRY = re.compile(r"^## L(\d+)\s*$")
_STONE = re.compile(r"^- L(\d+)\s+(.*)$")


def _iso(ts: float | None, *, day: bool = False) -> str:
    if ts is None:
        return ""
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%d") if day else dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_iso(value: str) -> float | None:
    if not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    return None


def _escape(text: str) -> str:
    """A lesson line that looks like our own markup is prefixed with a backslash."""
    out = []
    for line in text.splitlines():
        if line.startswith(("#", "<!--", "\\", "- L")):
            line = "\\" + line
        out.append(line)
    return "\n".join(out)


def _unescape(text: str) -> str:
    return "\n".join(line[1:] if line.startswith("\\") else line for line in text.splitlines())


def render_markdown(scope: str | None, lessons: list[Lesson]) -> str:
    title = "global (every product)" if scope is None else scope
    out = [f"# Lessons: {title}", "", _HEADER_NOTE, ""]
    for lesson in sorted((x for x in lessons if not x.deleted), key=lambda x: x.id):
        meta = [f"task={lesson.source_task}"]
        if lesson.source_commit:
            meta.append(f"commit={lesson.source_commit}")
        if lesson.source_event is not None:
            meta.append(f"event={lesson.source_event}")
        meta.append(f"by={lesson.source_actor}")
        if lesson.role:
            meta.append(f"role={lesson.role}")
        if lesson.tags:
            meta.append(f"tags={','.join(lesson.tags)}")
        meta.append(f"created={_iso(lesson.created_ts)}")
        if int(lesson.updated_ts) != int(lesson.created_ts):
            meta.append(f"updated={_iso(lesson.updated_ts)}")
        if lesson.last_used_ts:
            meta.append(f"last_used={_iso(lesson.last_used_ts, day=True)}")
        if lesson.use_count:
            meta.append(f"uses={lesson.use_count}")
        if lesson.pinned:
            meta.append("pinned=yes")
        if lesson.superseded_by is not None:
            meta.append(f"superseded_by={lesson.superseded_by}")
        out += [f"## L{lesson.id}", "", f"<!-- lesson: {' '.join(meta)} -->", "", _escape(lesson.text), ""]
    stones = sorted((x for x in lessons if x.deleted), key=lambda x: x.id)
    if stones:
        out += ["## Deleted", "", "<!-- Tombstones: import never brings these back. -->", ""]
        out += [f"- L{x.id} fp={x.fingerprint} task={x.source_task} created={_iso(x.created_ts)}" for x in stones]
        out.append("")
    return "\n".join(out)


@dataclass
class ParsedLesson:
    id: int
    where: str
    text: str = ""
    source_task: str = ""
    source_commit: str | None = None
    source_event: int | None = None
    source_actor: str = ""
    role: str | None = None
    tags: tuple[str, ...] = ()
    created_ts: float = 0.0
    updated_ts: float = 0.0
    last_used_ts: float | None = None
    use_count: int = 0
    pinned: bool = False
    superseded_by: int | None = None


@dataclass
class ParsedTombstone:
    id: int
    fingerprint: str
    source_task: str
    created_ts: float | None


def _kv(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split() if "=" in part)


def parse_markdown(text: str, where: str) -> tuple[list[ParsedLesson], list[ParsedTombstone], list[str]]:
    """(lessons, tombstones, problems) of one exported file; a problem names file:line."""
    lessons: list[ParsedLesson] = []
    stones: list[ParsedTombstone] = []
    problems: list[str] = []
    current: ParsedLesson | None = None
    body: list[str] = []
    in_deleted = False

    def close() -> None:
        nonlocal current
        if current is not None:
            current.text = _unescape("\n".join(body).strip())
            lessons.append(current)
        current = None
        body.clear()

    for n, line in enumerate(text.splitlines(), 1):
        m = _ENTRY.match(line)
        if m:
            close()
            in_deleted = False
            current = ParsedLesson(id=int(m.group(1)), where=f"{where}:{n}")
            continue
        if line.strip() == "## Deleted":
            close()
            in_deleted = True
            continue
        if in_deleted:
            s = _STONE.match(line)
            if s:
                kv = _kv(s.group(2))
                if "fp" not in kv or "task" not in kv:
                    problems.append(f"{where}:{n}: a tombstone needs fp= and task=")
                    continue
                stones.append(ParsedTombstone(int(s.group(1)), kv["fp"], kv["task"], _from_iso(kv.get("created", ""))))
            continue
        if current is None or (not body and not line.strip()):
            continue
        meta = _META.match(line)
        if meta and not body:
            kv = _kv(meta.group(1))
            try:
                current.source_task = kv.get("task", "")
                current.source_commit = kv.get("commit") or None
                current.source_event = int(kv["event"]) if kv.get("event") else None
                current.source_actor = kv.get("by", "")
                current.role = kv.get("role") or None
                current.tags = normalize_tags(kv.get("tags", "").split(","))
                current.created_ts = _from_iso(kv.get("created", "")) or 0.0
                current.updated_ts = _from_iso(kv.get("updated", "")) or current.created_ts
                current.last_used_ts = _from_iso(kv.get("last_used", ""))
                current.use_count = int(kv.get("uses", "0"))
                current.pinned = kv.get("pinned") == "yes"
                current.superseded_by = int(kv["superseded_by"]) if kv.get("superseded_by") else None
            except ValueError as e:
                problems.append(f"{where}:{n}: unreadable lesson line ({e})")
            continue
        if line.startswith("<!--") and not body:
            continue
        body.append(line)
    close()
    return lessons, stones, problems
