"""Rules and memory while the factory runs: real orchestrator, git, sandbox, SQLite and SDK over the scripted model.

- a rule file edited mid-session is in force from the agent's next model call (its rules_hash changes),
  and `rules.changed` is recorded;
- a rule file broken mid-session is reported with file and line, and the old rules stay in force;
- the journal scenario: task 1 fails the tests gate for a reason of that product's own, a lesson is
  remembered, task 2 gets it in its prompt (checked in the recorded request) and passes first time.
"""

import asyncio
import shutil
from pathlib import Path

import pytest

from cockpit.agents.scripted import first_user_text, system_text
from cockpit.config import load_factory
from cockpit.config import default_rules_dir
from cockpit.demo.build import DEMO_TASKS
from cockpit.domain import Kind, TaskState
from cockpit.domain.tasks import Outcome
from cockpit.factory.commands import add_task
from cockpit.factory.rules import RuleBook
from cockpit.factory.runtime import open_factory
from factory_kit import TEST_COMMAND, write_factory
from gitrepo import make_repo


async def wait_event(sub, pred, timeout=60.0):
    async def first():
        while True:
            ev = await sub.get()
            if pred(ev):
                return ev

    return await asyncio.wait_for(first(), timeout)


async def run_with_a_mid_session_edit(tmp_path, new_text):
    """Run one builder session; between its first and second model call, write `new_text` over rules/house.md.
    Returns (the event the edit caused, the builder's model.call events, the recorded requests, config)."""
    cfg = load_factory(write_factory(tmp_path / "f", scenario_files=("waiting_builder.toml",)))
    async with open_factory(cfg) as f:
        sub = f.store.subscribe()
        tid = (await add_task(f.store, product="shop", title="Wait for the rules")).task_id
        run = asyncio.create_task(f.orchestrator.run(until_idle=True, timeout=120))
        try:
            await wait_event(sub, lambda e: e.kind == Kind.AGENT_TOOL and e.data.get("name") == "run_command")
            (cfg.rules_path / "house.md").write_text(new_text)
            # on screen as soon as it is saved: the watcher reports it while the agent is still busy
            caused = await wait_event(sub, lambda e: e.kind in (Kind.RULES_CHANGED, Kind.RULES_ERROR))
            (f.orchestrator.workspaces.path_for("shop", tid) / "go").write_text("")
            await run
        finally:
            run.cancel()
        await f.store.flush()
        calls = [e for e in await f.store.events(kinds=[Kind.MODEL_CALL]) if e.actor.startswith("builder-")]
        return caused, calls, [system_text(r["system"]) for r in f.model.server.requests], cfg


async def test_a_rule_edited_mid_session_is_in_force_from_the_next_model_call(tmp_path):
    caused, calls, systems, cfg = await run_with_a_mid_session_edit(
        tmp_path, "# House rules\nKeep changes small.\nNEW RULE: say what you assumed.\n")
    assert len(calls) == 2 and len(systems) == 2
    before, after = calls[0].data["rules_hash"], calls[1].data["rules_hash"]
    assert before != after
    # the hash recorded is the hash of the rules text that call was given
    assert after == RuleBook(cfg.rules_path).effective("builder", "shop").hash
    assert "NEW RULE" not in systems[0] and "NEW RULE" in systems[1]
    assert caused.kind == Kind.RULES_CHANGED and caused.data["files"] == ["rules/house.md"]
    assert caused.data["old_hash"] != caused.data["new_hash"]


async def test_a_rule_file_broken_mid_session_is_reported_and_the_old_rules_stay(tmp_path):
    caused, calls, systems, cfg = await run_with_a_mid_session_edit(
        tmp_path, "---\norder: [1\n---\n# House rules\nBROKEN VERSION\n")
    assert caused.kind == Kind.RULES_ERROR
    assert caused.data["file"] == str(cfg.rules_path / "house.md") and caused.data["line"] == 2
    assert "not closed" in caused.data["message"] and caused.data["in_force"] is True
    assert len(calls) == 2 and calls[0].data["rules_hash"] == calls[1].data["rules_hash"]
    assert "Keep changes small." in systems[1] and "BROKEN VERSION" not in systems[1]


# --- what one task learns, the next starts from -----------------------------------------------------


def journal_factory(root: Path) -> Path:
    """The demo's journal product alone: its repo, the default rules, its scenario and the lessons turn."""
    demo = Path(__file__).resolve().parents[1] / "cockpit" / "demo"
    src = demo / "products" / "journal"
    files = {p.relative_to(src).as_posix(): p.read_text() for p in src.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    files[".gitignore"] = "__pycache__/\n.pytest_cache/\n"
    make_repo(root / "products" / "journal", files)
    shutil.copytree(default_rules_dir(), root / "rules")
    (root / "scenarios").mkdir()
    for name in ("journal.toml", "lessons.toml"):
        shutil.copy(demo / "scenarios" / name, root / "scenarios" / name)
    f = root / "factory.toml"
    f.write_text('[factory]\nmax_rounds = 2\n\n[model]\nmode = "scripted"\nscenarios = "scenarios"\n\n'
                 '[limits]\ncommand_timeout_s = 60\ntest_timeout_s = 120\n\n'
                 f'[[products]]\nname = "journal"\npath = "products/journal"\ntest_command = "{TEST_COMMAND}"\n'
                 'serial = true\n')
    return f


@pytest.mark.timeout(300)  # two tasks in sequence, ten sandboxed test runs: slow on a loaded 2-core machine
async def test_a_lesson_from_task_1_is_in_task_2s_prompt_and_it_passes_first_time(tmp_path):
    cfg = load_factory(journal_factory(tmp_path / "f"))
    (first_title, first_body), (second_title, second_body) = [(t, b) for p, t, b in DEMO_TASKS if p == "journal"]
    async with open_factory(cfg) as f:
        t1 = (await add_task(f.store, product="journal", title=first_title, body=first_body)).task_id
        t2 = (await add_task(f.store, product="journal", title=second_title, body=second_body)).task_id
        await f.orchestrator.run(until_idle=True, timeout=240)
        await f.store.flush()
        one, two = f.store.task(t1), f.store.task(t2)
        requests = list(f.model.server.requests)
        (lesson,) = await f.orchestrator.knowledge.memory.lessons()
        calls = await f.store.events(task_id=t2, kinds=[Kind.MODEL_CALL])

    # task 1: failed the tests gate for journal's own reason, went round again, landed
    assert one.state == TaskState.DONE and one.rounds == 1
    failed = [v for v in one.verdicts if v.gate == "tests" and v.outcome == Outcome.FAIL]
    assert failed and "naive datetime" in failed[0].detail
    # the lesson its builder remembered names where it came from
    assert lesson.product == "journal" and lesson.source_task == t1 and lesson.source_actor == one.assignee
    assert lesson.source_commit in one.commits and lesson.source_event is not None
    assert "datetime.now(timezone.utc)" in lesson.text

    # task 2: the lesson is in its builder's first request, after the rules and before the role; first time right
    builder_first = [r for r in requests if "ROLE: builder" in system_text(r["system"])
                     and second_title in first_user_text(r["messages"]) and len(r["messages"]) == 1]
    assert builder_first, "task 2's builder was never asked"
    system = system_text(builder_first[0]["system"])
    assert system.index("<!-- rules/") < system.index(f"[L{lesson.id}] {lesson.text}") < system.index("ROLE: builder")
    # a builder's lesson is for builders: task 2's builder calls carry it, its judges' calls do not (issue 18)
    assert all(c.data["lesson_ids"] == ([lesson.id] if c.actor.startswith("builder-") else []) for c in calls)
    assert any(c.actor.startswith("builder-") for c in calls) and any(c.actor.startswith("reviewer-") for c in calls)
    assert two.state == TaskState.DONE and two.rounds == 0
    assert all(v.outcome == Outcome.PASS for v in two.verdicts)
