"""Demo history: six simulated weeks of three made-up products, written through the real store.

So that a fresh demo's rate screen and `cockpit rate` have weeks to judge. It is simulated, not
recorded, and marked so everywhere: the products are `history-*`, task ids start with `H`,
titles with "[demo history]", every event it writes carries `demo_history: true` and its
lessons (written by the memory, whose events are its own) are tagged `demo-history`. The stories are
chosen so the three verdicts show: one product compounds, one stays flat, one gets worse.

The events are real all the same: each task event passes the domain inside the store's writer
(every task walks a path the cockpit accepts), each settlement writes its ledger row (at the
time it happened, so no day's budget is charged for it today), lessons go through the memory,
and each product is a real (bare) git repository whose main holds every commit the events name.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..domain.events import Event, Kind
from ..host import safe_git
from ..domain.prices import Usage, default_prices
from ..store import Store
from ..store import history_rows

MARK = {"demo_history": True}
TITLE_PREFIX = "[demo history] "
WEEKS = 6
HOUR = 3600.0
DAY = 24 * HOUR
BUILDER_MODEL = "claude-sonnet-5-5"  # the demo factory's roles
REVIEWER_MODEL = "claude-opus-5-5"


@dataclass(frozen=True)
class Story:
    """How a product's weeks go, each figure from the first week to the last (linear in between)."""

    shows: str  # the verdict the story is written to show
    tasks: tuple[float, float]  # tasks a week
    first_pass: tuple[float, float]  # share that pass first time
    human: tuple[float, float]  # share of the reworked ones that need the human
    defects: tuple[float, float]  # share of tasks whose rework is a defect the breaker found
    escaped: tuple[float, float]  # share of merged tasks that need a follow-up fix later
    calls: tuple[float, float]  # model calls a builder session makes
    cache: tuple[float, float]  # share of input read from the prompt cache
    queue_h: tuple[float, float]  # hours a task waits for a builder
    wait_min: tuple[float, float]  # minutes a blocked task waits for the human
    learns: float  # chance a task with rework leaves a lesson
    jitter: float  # how much single tasks vary
    titles: tuple[str, ...]
    lessons: tuple[str, ...]


STORIES: dict[str, Story] = {
    "history-billing": Story(
        shows="compounding", tasks=(3, 7), first_pass=(0.3, 0.85), human=(0.6, 0.1), defects=(0.3, 0.05),
        escaped=(0.15, 0.0), calls=(6, 3), cache=(0.3, 0.75), queue_h=(14, 2), wait_min=(240, 40), learns=0.9,
        jitter=0.2,
        titles=("Invoice PDF export", "Proration for plan changes", "Dunning emails", "VAT by country",
                "Credit notes", "Usage-based line items", "Refund to original card", "Tax-exempt customers",
                "Annual plan discounts", "Currency rounding on invoices", "Webhook for paid invoices",
                "Retry failed charges"),
        lessons=("Money in billing is Decimal rounded half-up to cents at the line, never float.",
                 "Every invoice test pins the tax table date; VAT rates change.",
                 "Proration uses whole seconds of the period, computed in UTC.",
                 "Webhooks are retried: every handler is idempotent on the event id.",
                 "Amounts in the API are integer cents; convert only at the edges."),
    ),
    "history-search": Story(
        shows="flat", tasks=(4, 4), first_pass=(0.5, 0.5), human=(0.5, 0.5), defects=(0.25, 0.25),
        escaped=(0.0, 0.0), calls=(4, 4), cache=(0.5, 0.5), queue_h=(6, 6), wait_min=(120, 120), learns=0.3,
        jitter=0.08,
        titles=("Typo tolerance", "Synonyms file", "Facet counts", "Highlight matches", "Query suggestions",
                "Boost recent documents", "Stop words per language", "Pagination cursor", "Index rebuild command",
                "Phrase queries"),
        lessons=("The index fixture is rebuilt per test; never share it between tests.",
                 "Scores are compared with a tolerance, never for equality."),
    ),
    "history-mobile": Story(
        shows="worse", tasks=(6, 2), first_pass=(0.75, 0.2), human=(0.1, 0.6), defects=(0.1, 0.4),
        escaped=(0.03, 0.25), calls=(3, 7), cache=(0.6, 0.3), queue_h=(3, 22), wait_min=(60, 420), learns=0.2,
        jitter=0.2,
        titles=("Offline mode", "Push notification settings", "Dark theme", "Biometric login", "Image cache",
                "Deep links", "Onboarding screens", "Crash reporter", "Background sync", "Accessibility labels"),
        lessons=("The sync tests need the fake clock; real time makes them flaky.",),
    ),
}

_TOOLS = ("read_file", "list_files", "search", "write_file", "run_command", "read_file")


def _lerp(pair: tuple[float, float], week: int) -> float:
    a, b = pair
    return a + (b - a) * week / max(WEEKS - 1, 1)


@dataclass
class _Planned:
    ts: float
    order: int
    kind: str
    actor: str
    product: str
    task_id: str
    data: dict[str, Any]
    ledger: tuple[Any, ...] | None = None  # a settlement's ledger row, but for its time (added when written)


@dataclass
class _TaskPlan:
    id: str
    product: str
    title: str
    commits: list[tuple[str, float]] = field(default_factory=list)  # (placeholder, ts)
    merged_ts: float = 0.0
    events: list[_Planned] = field(default_factory=list)


class _Sim:
    """Plays one product's weeks into planned events; commit and lesson ids are placeholders until written."""

    def __init__(self, name: str, story: Story, rng: random.Random, start: float, end: float, human: str,
                 counter: list[int], order: list[int]):
        self.name, self.story, self.rng = name, story, rng
        self.start, self.end, self.human = start, end, human
        self.counter, self.order = counter, order
        self.prices = default_prices()
        self.tasks: list[_TaskPlan] = []
        self.lessons: list[tuple[float, str]] = []  # (ts learned, placeholder)
        self.lesson_texts = list(story.lessons)

    def vary(self, x: float) -> float:
        return x * (1 + self.rng.uniform(-self.story.jitter, self.story.jitter))

    # --- one task -------------------------------------------------------------------------------

    def run(self) -> None:
        for week in range(WEEKS):
            w0 = self.start + week * 7 * DAY
            n = max(1, round(_lerp(self.story.tasks, week)))
            paths = self.paths(n, week)
            escaped = set(self.rng.sample(range(n), round(n * _lerp(self.story.escaped, week))))
            for i, path in enumerate(paths):
                created = w0 + 4 * HOUR + (i + self.rng.uniform(0.1, 0.9)) * (6 * DAY) / n
                task = self.task(created, path, week)
                if i in escaped and task.merged_ts + 4 * DAY < self.end:
                    fix = self.task(task.merged_ts + self.rng.uniform(1, 3) * DAY, "first" if i % 2 else "tests",
                                    week, fixes=task)
                    if fix.merged_ts > self.end:
                        self.tasks.remove(fix)

    def paths(self, n: int, week: int) -> list[str]:
        first = round(n * _lerp(self.story.first_pass, week))
        rest = n - first
        human = min(rest, round(rest * _lerp(self.story.human, week)))
        defects = min(rest - human, round(n * _lerp(self.story.defects, week)))
        other = rest - human - defects
        out = ["first"] * first + ["defect"] * defects
        out += [("human", "retry")[i % 2] for i in range(human)]
        out += [("tests", "review")[i % 2] for i in range(other)]
        self.rng.shuffle(out)
        return out

    def task(self, created: float, path: str, week: int, fixes: _TaskPlan | None = None) -> _TaskPlan:
        self.counter[0] += 1
        tid = f"H{self.counter[0]}"
        base = self.story.titles[len(self.tasks) % len(self.story.titles)]
        title = f"Fix: {fixes.title.removeprefix(TITLE_PREFIX)}" if fixes else base
        t = _TaskPlan(tid, self.name, TITLE_PREFIX + title)
        self.tasks.append(t)
        self.t = created
        self.cur = t
        builder = f"builder-{self.rng.randint(1, 3)}"
        extra = {"fixes": fixes.id} if fixes else {}
        self.emit(Kind.TASK_CREATED, self.human, 0, title=t.title, body="Simulated work for the demo's rate screen.",
                  **extra)
        self.emit(Kind.TASK_STARTED, "system", self.vary(_lerp(self.story.queue_h, week)) * 60, agent=builder)
        rework = path != "first"
        if path == "retry":
            self.session(builder, "builder", week, reason="max_turns")
            self.emit(Kind.BLOCKED, "system", 1, reasons=["builder"],
                      detail=f"{builder} used all its turns without submitting.")
            self.emit(Kind.RETRY, self.human, self.vary(_lerp(self.story.wait_min, week)))
        sha = self.build(builder, week)
        if path in ("tests", "human"):
            self.tests(sha, "fail")
            self.emit(Kind.SENT_BACK, "system", 1, reason=f"tests gate failed on {sha}: 2 failed", gate="tests")
            sha = self.build(builder, week)
            if path == "human":
                self.tests(sha, "fail")
                self.emit(Kind.BLOCKED, "system", 1, reasons=["tests"],
                          detail="still failing (tests) after 2 rounds: 1 failed")
                self.emit(Kind.SENT_BACK, self.human, self.vary(_lerp(self.story.wait_min, week)),
                          reason="Read the failing test first; the fixture sets the clock.")
                sha = self.build(builder, week)
        self.tests(sha, "pass")
        self.emit(Kind.CHECKED, "system", 0.2)
        if path == "review":
            self.review(sha, week, verdict="changes")
            sha = self.build(builder, week)
            self.tests(sha, "pass")
            self.emit(Kind.CHECKED, "system", 0.2)
        if path == "defect":
            self.review(sha, week, verdict="approve", defect=True)
            self.emit(Kind.SENT_BACK, "system", 1, reason="defect D1 open", gate="defects")
            new = self.build(builder, week)
            self.tests(new, "pass")
            self.emit(Kind.DEFECT_CLOSED, "system", 1, defect="D1", commit=new, exit_code=0,
                      detail="the reproduction passes")
            self.emit(Kind.CHECKED, "system", 0.2)
            sha = new
        self.review(sha, week, verdict="approve")
        self.emit(Kind.READY, "system", 0.2)
        self.emit(Kind.VERDICT, "system", 3, gate="merge", commit=f"@m:{tid}", source=sha, base=f"@b:{tid}",
                  outcome="pass", detail="tests passed on the merge")
        self.emit(Kind.MERGED, "system", 0.5, merged_commit=f"@m:{tid}", base=f"@b:{tid}")
        t.merged_ts = self.t
        if rework and self.rng.random() < self.story.learns:
            self.reflect(builder, week)
        return t

    # --- steps ------------------------------------------------------------------------------------

    def emit(self, kind: str, actor: str, minutes: float, ledger: tuple[Any, ...] | None = None, **data: Any) -> None:
        self.t += max(minutes * 60, 1.0)
        self.order[0] += 1
        self.cur.events.append(_Planned(self.t, self.order[0], kind, actor, self.name, self.cur.id,
                                        {**data, **MARK}, ledger))

    def recall(self) -> list[str]:
        known = [key for ts, key in self.lessons if ts < self.t]
        return known[-3:]

    def call(self, agent: str, role: str, week: int) -> None:
        model = REVIEWER_MODEL if role == "reviewer" else BUILDER_MODEL
        total = int(self.rng.uniform(6000, 14000))
        read = int(total * min(0.95, max(0.0, self.vary(_lerp(self.story.cache, week)))))
        write = min(total - read, int(self.rng.uniform(200, 1500)))
        usage = Usage(input_tokens=total - read - write, output_tokens=int(self.rng.uniform(250, 1200)),
                      cache_creation_input_tokens=write, cache_read_input_tokens=read)
        usd = round(self.prices.cost(model, usage), 6)
        cid = f"call_hist_{self.order[0] + 1}"
        u = usage.model_dump()

        row = (cid, self.cur.id, self.name, agent, model, usd, usd, usage.input_tokens, usage.output_tokens,
               usage.cache_creation_input_tokens, usage.cache_read_input_tokens)
        self.emit(Kind.SPEND, "system", self.rng.uniform(0.5, 2.5), ledger=row, call_id=cid, usd=usd, usage=u,
                  state="settled", agent=agent, model=model)
        self.emit(Kind.MODEL_CALL, agent, 0, call_id=cid, model=model, usd=usd, usage=u, stop_reason="tool_use",
                  lesson_ids=self.recall())

    def session(self, agent: str, role: str, week: int, *, calls: int | None = None, reason: str = "ended",
                tools: tuple[str, ...] = _TOOLS) -> None:
        n = calls if calls is not None else max(1, round(self.vary(_lerp(self.story.calls, week))))
        self.emit(Kind.AGENT_STARTED, agent, 0.2, agent=agent, role=role,
                  model=REVIEWER_MODEL if role == "reviewer" else BUILDER_MODEL)
        for i in range(n):
            self.call(agent, role, week)
            if i < n - 1 or reason != "ended":
                name = self.rng.choice(tools)
                self.emit(Kind.AGENT_TOOL, agent, 0.1, agent=agent, name=name, input={"path": "src/"})
        self.emit(Kind.AGENT_FINISHED, agent, 0.1, agent=agent, reason=reason, turns=n)

    def build(self, builder: str, week: int) -> str:
        self.session(builder, "builder", week, reason="called submit")
        key = f"@c:{self.cur.id}:{len(self.cur.commits) + 1}"
        self.emit(Kind.COMMITTED, builder, 0.5, sha=key, message=self.cur.title)
        self.cur.commits.append((key, self.t))
        self.emit(Kind.SUBMITTED, builder, 0.1, commit=key)
        return key

    def tests(self, sha: str, outcome: str) -> None:
        self.emit(Kind.VERDICT, "system", self.rng.uniform(2, 4), gate="tests", commit=sha, outcome=outcome,
                  detail="12 passed" if outcome == "pass" else "1 failed, 11 passed",
                  exit_code=0 if outcome == "pass" else 1)

    def review(self, sha: str, week: int, *, verdict: str, defect: bool = False) -> None:
        reviewer, breaker = f"reviewer-{self.rng.randint(1, 2)}", f"breaker-{self.rng.randint(1, 2)}"
        self.session(breaker, "breaker", week, calls=self.rng.randint(1, 2), reason="ended")
        if defect:
            self.emit(Kind.DEFECT_OPENED, breaker, 0.5, commit=sha, title="edge case fails", repro_kind="command",
                      reproduction="python -m pytest -q tests/test_edge.py", exit_code=1, detail="1 failed")
        self.session(reviewer, "reviewer", week, calls=self.rng.randint(1, 2), reason="ended")
        if verdict == "changes":
            self.emit(Kind.CHANGES_REQUESTED, reviewer, 0.2, commit=sha, note="Name the rounding rule in a test.")
        else:
            self.emit(Kind.APPROVED, reviewer, 0.2, commit=sha, note="Reads well; tests cover it.")

    def reflect(self, builder: str, week: int) -> None:
        """The lessons turn after a task with rework: one call, one `remember`."""
        self.session(builder, "builder", week, calls=1, reason="called remember", tools=("remember",))
        if self.lesson_texts:
            key = f"@L:{self.name}:{len(self.lessons) + 1}"
            self.lessons.append((self.t, key))
            self.emit("@remember", builder, 0.1, key=key, text=self.lesson_texts.pop(0))


# --- git: a real main that holds every commit the events name ---------------------------------------


def _git_env() -> dict[str, str]:
    return safe_git.hardened_env({"GIT_AUTHOR_NAME": "demo history", "GIT_AUTHOR_EMAIL": "demo@cockpit.local",
                                  "GIT_COMMITTER_NAME": "demo history", "GIT_COMMITTER_EMAIL": "demo@cockpit.local"})


def _data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n" % len(raw) + raw + b"\n"


def fast_import_stream(product: str, tasks: list[_TaskPlan], start: float) -> tuple[bytes, dict[str, int]]:
    """The `git fast-import` input for one product: an initial commit, then per merged task (in merge
    order) its commits and a merge commit on main; and placeholder -> mark (commits, merges, bases)."""
    out = bytearray()
    who = "demo history <demo@cockpit.local>"
    readme = (f"# {product}\nDemo history written by `cockpit demo`: a simulated product. Its commits stand for work "
              "that was simulated, not done; they exist so that every commit the demo's history names is real.\n")
    out += b"commit refs/heads/main\nmark :1\n"
    out += f"committer {who} {int(start)} +0000\n".encode() + _data(f"Initial {product} (demo history)")
    out += b"M 100644 inline README.md\n" + _data(readme) + b"\n"
    mark, tip = 1, 1
    marks: dict[str, int] = {}
    for t in sorted(tasks, key=lambda x: x.merged_ts):
        parent = tip
        for key, ts in t.commits:
            mark += 1
            marks[key] = mark
            n = key.rsplit(":", 1)[1]
            out += f"commit refs/heads/main\nmark :{mark}\ncommitter {who} {int(ts)} +0000\n".encode()
            out += _data(f"{t.title} (round {n})") + f"from :{parent}\n".encode()
            out += f"M 100644 inline work/{t.id}.md\n".encode() + _data(f"{t.title}\nround {n}\n") + b"\n"
            parent = mark
        mark += 1
        marks[f"@m:{t.id}"] = mark
        marks[f"@b:{t.id}"] = tip
        out += f"commit refs/heads/main\nmark :{mark}\ncommitter {who} {int(t.merged_ts)} +0000\n".encode()
        out += _data(f"Merge {t.id}: {t.title}") + f"from :{tip}\nmerge :{parent}\n".encode()
        out += f"M 100644 inline work/{t.id}.md\n".encode() + _data(f"{t.title}\nround {len(t.commits)}\n") + b"\n"
        tip = mark
    return bytes(out), marks


def write_repos(products_dir: Path, plans: dict[str, list[_TaskPlan]], start: float) -> dict[str, str]:
    """A bare git repository per product (it is history: nobody works in it), all written at once;
    returns placeholder -> sha for every commit, merge and base the events name."""
    env = _git_env()
    jobs = []
    for name, tasks in plans.items():
        repo = products_dir / name
        repo.mkdir(parents=True, exist_ok=True)
        subprocess.run(safe_git.argv("init", "-q", "--bare", "-b", "main", str(repo)), check=True, env=env,
                       capture_output=True)
        stream, marks = fast_import_stream(name, tasks, start)
        marks_file = repo / "demo-history-marks"
        proc = subprocess.Popen(safe_git.argv("fast-import", "--quiet", f"--export-marks={marks_file}"), cwd=repo, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        jobs.append((proc, stream, marks, marks_file))
    resolved: dict[str, str] = {}
    for proc, stream, marks, marks_file in jobs:
        _, err = proc.communicate(stream)
        if proc.returncode != 0:
            raise RuntimeError(f"demo history: git fast-import failed: {err.decode(errors='replace')[-500:]}")
        sha_of = {}
        for line in marks_file.read_text().splitlines():
            m, sha = line.split()
            sha_of[int(m[1:])] = sha
        marks_file.unlink()
        resolved.update({key: sha_of[m] for key, m in marks.items()})
    return resolved


# --- writing it all through the store -------------------------------------------------------------


@dataclass
class Seeded:
    products: list[str]
    tasks: int
    events: int
    lessons: int


def plan(*, now: float, human: str = "human:you", seed: int = 9) -> dict[str, list[_TaskPlan]]:
    """Every product's simulated tasks, the newest ending before `now` (pure: no I/O)."""
    start = now - WEEKS * 7 * DAY
    counter, order = [0], [0]
    out = {}
    for i, (name, story) in enumerate(STORIES.items()):
        sim = _Sim(name, story, random.Random(seed * 100 + i), start, now - 300, human, counter, order)
        sim.run()
        for t in sim.tasks:
            late = t.events[-1].ts - (now - 300)
            if late > 0:  # the newest tasks end before now: shift them back whole
                for e in t.events:
                    e.ts -= late
                t.commits = [(k, ts - late) for k, ts in t.commits]
                t.merged_ts -= late
        out[name] = sim.tasks
    return out


def _resolve(value: Any, shas: dict[str, str], lessons: dict[str, int]) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        return shas.get(value, value)
    if isinstance(value, list):
        return [lessons[v] for v in value if v in lessons] if all(isinstance(v, str) and v.startswith("@L:")
                                                                   for v in value) else value
    return value


async def seed_history(store: Store, products_dir: Path, *, human: str = "human:you", now: float | None = None,
                       seed: int = 9) -> Seeded:
    """Write the history's repositories under `products_dir` and its events into `store` (an empty one:
    seed before the factory runs, so no live task interleaves with it)."""
    from ..store.memory import Memory

    now = time.time() if now is None else now
    if any(t.product in STORIES for t in store.tasks()):
        raise FileExistsError(f"{store.path} holds demo history already")
    plans = plan(now=now, human=human, seed=seed)
    shas = write_repos(products_dir, plans, now - WEEKS * 7 * DAY)
    planned = sorted((e for tasks in plans.values() for t in tasks for e in t.events), key=lambda e: (e.ts, e.order))
    ledger_sql = _ledger_statements(plans)
    memory = Memory(store)
    lesson_ids: dict[str, int] = {}
    futures: list[asyncio.Future] = []
    for p in planned:
        if p.kind == "@remember":
            memory.clock = lambda ts=p.ts: ts
            commit = shas.get(next((k for k, _ in reversed(_commits_of(plans, p.task_id))), ""), None)
            r = await memory.remember(p.data["text"], tags=["demo-history"], product=p.product, role="builder",
                                      source_task=p.task_id, actor=p.actor, source_commit=commit)
            if r.lesson_id is not None:
                lesson_ids[p.data["key"]] = r.lesson_id
            continue
        data = {k: _resolve(v, shas, lesson_ids) for k, v in p.data.items()}
        ev = Event(kind=p.kind, actor=p.actor, product=p.product, task_id=p.task_id, data=data, ts=p.ts)
        futures.append(store.submit(ev, ledger_sql.get(id(p))))
    results = await asyncio.gather(*futures, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise RuntimeError(f"demo history: {len(errors)} events refused, the first: {errors[0]}") from errors[0]
    return Seeded(products=list(plans), tasks=sum(len(t) for t in plans.values()), events=len(futures),
                  lessons=len(lesson_ids))


def _ledger_statements(plans: dict[str, list[_TaskPlan]]) -> dict[int, list[tuple[str, tuple[Any, ...]]]]:
    """Each task's ledger rows, committed with the task's last settlement."""
    out: dict[int, list[tuple[str, tuple[Any, ...]]]] = {}
    for tasks in plans.values():
        for t in tasks:
            spends = [e for e in t.events if e.ledger is not None]
            if not spends:
                continue
            calls = []
            for e in spends:
                cid, task, product, actor, model, reserved, settled, *tokens = e.ledger  # type: ignore[misc]
                calls.append((cid, e.ts, task, product, actor, model, reserved, settled, *tokens))
            out[id(spends[-1])] = history_rows.settled_calls(calls)
    return out


def _commits_of(plans: dict[str, list[_TaskPlan]], task_id: str) -> list[tuple[str, float]]:
    for tasks in plans.values():
        for t in tasks:
            if t.id == task_id:
                return t.commits
    return []
