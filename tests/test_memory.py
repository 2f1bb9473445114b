"""Memory: lessons in the real store (FTS5), their sources, hygiene, recall, and the markdown round trip."""

import sqlite3

import pytest

from cockpit.cli import main
from cockpit.config import FactoryConfig
from cockpit.domain import Event, Kind, Refused
from cockpit.factory.knowledge import Knowledge, remember_from_tool
from cockpit.store import Store
from cockpit.store.memory import (
    Memory,
    fingerprint,
    fts_query,
    jaccard,
    parse_markdown,
    tokens,
)

DAY = 86400.0
T0 = 1_750_000_000.0

LEDGER = "Money in ledger is Decimal rounded ROUND_HALF_UP; a float fails tests/test_rounding.py."
JOURNAL = "journal stores every timestamp timezone-aware in UTC: use datetime.now(timezone.utc)."


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
async def store(tmp_path):
    s = await Store.open(tmp_path / "cockpit.db")
    yield s
    await s.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def memory(store, clock):
    return Memory(store, fade_days=60, clock=clock)


async def add(memory, text, product="ledger", task="T1", **kw):
    kw.setdefault("role", "builder")
    kw.setdefault("actor", "builder-1")
    return await memory.remember(text, product=product, source_task=task, **kw)


def test_text_helpers():
    assert tokens("The Decimal is, of course, ROUND_HALF_UP!") == ["decimal", "course", "round", "half", "up"]
    assert fingerprint("Use  Decimal.") == fingerprint("use decimal")
    assert jaccard(["a", "b"], ["a", "b", "c", "d"]) == 0.5
    assert fts_query("the a of") is None and fts_query("Round totals, round!") == '"round" OR "totals"'


async def test_remember_is_sourced_and_recorded_as_an_event(memory, store):
    r = await add(memory, LEDGER, tags=["Money", "rounding", "money"], source_commit="abc123", source_event=7)
    assert r.action == "added" and r.lesson_id == 1
    lesson = await memory.get(1)
    assert (lesson.text, lesson.product, lesson.role, lesson.tags) == (LEDGER, "ledger", "builder", ("money", "rounding"))
    assert (lesson.source_task, lesson.source_commit, lesson.source_event, lesson.source_actor) == ("T1", "abc123", 7,
                                                                                                   "builder-1")
    assert lesson.created_ts == T0 and lesson.use_count == 0 and not lesson.pinned and not lesson.deleted
    (ev,) = await store.events(kinds=[Kind.MEMORY_REMEMBERED])
    assert ev.actor == "builder-1" and ev.task_id == "T1" and ev.data["lesson_id"] == 1

    refused = await memory.remember("Another lesson entirely about caching.", product="ledger", role="builder",
                                    source_task=None, actor="builder-1")
    assert refused.action == "refused" and "unsourced" in refused.message
    assert (await add(memory, "x" * 2000)).action == "refused"
    # the table itself refuses a lesson without a task, whatever the code above it does
    with sqlite3.connect(store.path) as raw, pytest.raises(sqlite3.IntegrityError):
        raw.execute("INSERT INTO lessons(id, text, source_task, source_actor, created_ts, updated_ts, fingerprint) "
                    "VALUES (99, 'x', '', 'a', 0, 0, 'f')")


async def test_near_duplicate_updates_instead_of_adding(memory):
    first = await add(memory, LEDGER, tags=["money"])
    again = await add(memory, "Money in ledger is Decimal, rounded ROUND_HALF_UP: a float fails tests/test_rounding.py!",
                      task="T2", tags=["rounding"])
    assert again.action == "updated" and again.lesson_id == first.lesson_id
    (only,) = await memory.lessons()
    assert only.tags == ("money", "rounding") and only.source_task == "T1"  # the first teacher stays the source
    other = await add(memory, "Invoices print totals with two decimals and a currency sign.", task="T3")
    assert other.action == "added" and len(await memory.lessons()) == 2
    # a product lesson already known globally is not added again
    await add(memory, JOURNAL, product=None)
    known = await add(memory, JOURNAL, product="journal")
    assert known.action == "known" and (await memory.get(known.lesson_id)).product is None


async def test_edit_pin_supersede_delete_and_deleted_never_comes_back(memory, store, tmp_path):
    lid = (await add(memory, LEDGER)).lesson_id
    edited = await memory.edit(lid, actor="human:you", text=LEDGER + " Say so in the note.", tags="money, decimal")
    assert edited.text.endswith("Say so in the note.") and edited.tags == ("money", "decimal")
    assert (await memory.pin(lid, actor="human:you")).pinned

    newer = (await add(memory, "Ledger totals: quantize(Decimal('0.01'), ROUND_HALF_UP) once, at the end.",
                       task="T4")).lesson_id
    await memory.supersede(lid, newer, actor="human:you")
    assert [x.id for x in await memory.recall("ledger decimal rounding", product="ledger")] == [newer]
    with pytest.raises(Refused):
        await memory.supersede(newer, newer, actor="human:you")

    await memory.delete(newer, actor="human:you")
    assert (await memory.get(newer)).deleted and await memory.recall("ledger quantize", product="ledger") == []
    with pytest.raises(Refused):
        await memory.pin(newer, actor="human:you")
    # neither the same words nor a near-duplicate are recorded again
    again = await add(memory, "Ledger totals: quantize(Decimal('0.01'), ROUND_HALF_UP) once, at the end.", task="T9")
    assert again.action == "refused" and "deleted" in again.message
    near = await add(memory, "Ledger totals: quantize(Decimal('0.01'), ROUND_HALF_UP) once at the very end.", task="T9")
    assert near.action == "refused"
    # and the store backs it up: a resurrecting write is ignored, a hard delete is refused
    with sqlite3.connect(store.path) as raw:
        raw.execute("UPDATE lessons SET deleted = 0 WHERE id = ?", (newer,))
        assert raw.execute("SELECT deleted FROM lessons WHERE id = ?", (newer,)).fetchone() == (1,)
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute("DELETE FROM lessons")
    kinds = [e.kind for e in await store.events(kinds=["memory.remembered", "memory.updated", "memory.deleted",
                                                        "memory.pinned", "memory.superseded"])]
    assert kinds == ["memory.remembered", "memory.updated", "memory.pinned", "memory.remembered", "memory.superseded",
                     "memory.deleted"]


async def test_fade_pinned_and_used_lessons(memory, clock):
    old = (await add(memory, LEDGER)).lesson_id
    pinned = (await add(memory, "Ledger invoices: every line keeps its currency code.", task="T2")).lesson_id
    await memory.pin(pinned, actor="human:you")
    clock.t = T0 + 30 * DAY
    used = (await add(memory, "Ledger rounding happens once per invoice, never per line.", task="T3")).lesson_id
    assert {x.id for x in await memory.recall("ledger rounding invoice currency decimal", product="ledger")} == {
        old, pinned, used}
    clock.t = T0 + 61 * DAY  # `old` unused for 61 days fades; the pinned one never does
    assert {x.id for x in await memory.recall("ledger rounding invoice currency decimal", product="ledger")} == {
        pinned, used}
    assert (await memory.get(old)).faded(clock.t, 60)
    await memory.mark_used([used])
    await memory.store.flush()
    clock.t = T0 + 120 * DAY
    assert (await memory.get(used)).use_count == 1
    assert {x.id for x in await memory.recall("ledger rounding", product="ledger")} == {pinned, used}
    # search still finds a faded lesson, for the human
    assert old in [x.id for x in await memory.search("decimal rounding", product="ledger")]


async def test_recall_scope_ranking_and_token_budget(memory):
    await add(memory, LEDGER)
    await add(memory, "Shop exports CSV with a header row; quote commas.", product="shop", task="T2")
    glob = (await add(memory, "Every product: run the exact gate command before submit, rounding included.",
                      product=None, task="T3")).lesson_id
    got = await memory.recall("Round invoice totals to cents (rounding half-up)", product="ledger")
    assert [x.product for x in got] == ["ledger", None] and got[1].id == glob
    assert got[0].score < got[1].score  # bm25: lower is better
    assert await memory.recall("CSV export", product="ledger") == []  # another product's lesson never comes
    assert len(await memory.recall("rounding", product="ledger", token_budget=40)) == 1


async def test_export_import_round_trip_and_tombstones(tmp_path, memory, store, clock):
    a = (await add(memory, LEDGER, tags=["money"], source_commit="c0ffee", source_event=12)).lesson_id
    b = (await add(memory, "Line 1 of a lesson.\n# not a heading\n- L7 not a tombstone\n## nor an entry", task="T2",
                   product="ledger")).lesson_id
    c = (await add(memory, JOURNAL, product="journal", task="T6")).lesson_id
    g = (await add(memory, "Every product: commit messages say why.", product=None, task="T7")).lesson_id
    gone = (await add(memory, "Ledger: never log the IBAN of a customer.", task="T8")).lesson_id
    await memory.pin(c, actor="human:you")
    await memory.supersede(b, a, actor="human:you")
    clock.t += 3 * DAY
    await memory.mark_used([a])
    await memory.delete(gone, actor="human:you")
    await store.flush()

    out1 = tmp_path / "export1"
    written = await memory.export_markdown(out1)
    assert sorted(p.name for p in written) == ["_global.md", "journal.md", "ledger.md"]
    ledger_md = (out1 / "ledger.md").read_text()
    assert "task=T1 commit=c0ffee event=12 by=builder-1" in ledger_md and "## Deleted" in ledger_md
    assert "IBAN" not in ledger_md and "\\# not a heading" in ledger_md

    other = await Store.open(tmp_path / "other.db")
    try:
        mem2 = Memory(other, clock=clock)
        report = await mem2.import_markdown(out1, actor="human:you")
        assert sorted(report.added) == sorted([a, b, c, g]) and report.deleted == [gone] and not report.skipped
        out2 = tmp_path / "export2"
        await mem2.export_markdown(out2)
        for name in ("_global.md", "journal.md", "ledger.md"):
            assert (out2 / name).read_text() == (out1 / name).read_text(), name
        assert (await mem2.get(b)).text == "Line 1 of a lesson.\n# not a heading\n- L7 not a tombstone\n## nor an entry"
        assert (await mem2.get(b)).superseded_by == a and (await mem2.get(c)).pinned
        # the tombstone travelled: the deleted lesson cannot be remembered in the new store either
        assert (await mem2.remember("Ledger: never log the IBAN of a customer.", product="ledger", role="builder",
                                    source_task="T9", actor="builder-2")).action == "refused"
        # importing again changes nothing
        again = await mem2.import_markdown(out1, actor="human:you")
        assert not again.added and not again.updated and not again.deleted
    finally:
        await other.close()

    # a human edits the export: the text change comes in, an unsourced lesson and a deleted one do not
    text = (out1 / "ledger.md").read_text().replace("Money in ledger is Decimal", "Money in ledger is always Decimal")
    text += ("\n## L40\n\n<!-- lesson: by=human:you created=2025-01-01T00:00:00Z -->\n\nNo source here.\n"
             "\n## L41\n\n<!-- lesson: task=T3 by=x created=2025-01-01T00:00:00Z -->\n\n"
             "Ledger: never log the IBAN of a customer!\n")
    (out1 / "ledger.md").write_text(text)
    report = await memory.import_markdown(out1, actor="human:you")
    assert report.updated == [a] and (await memory.get(a)).text.startswith("Money in ledger is always Decimal")
    assert len(report.skipped) == 2 and any("no source task" in s for s in report.skipped)
    assert any("never comes back" in s for s in report.skipped)


def test_parse_markdown_reports_bad_tombstones():
    lessons, stones, problems = parse_markdown("# Lessons: x\n\n## Deleted\n\n- L3 fp=abc\n", "m.md")
    assert not lessons and not stones and problems == ["m.md:5: a tombstone needs fp= and task="]


# --- the remember tool and recall injection --------------------------------------------------------


async def test_remember_tool_sources_the_lesson_from_the_task(memory, store):
    created = await store.append(Event(kind=Kind.TASK_CREATED, actor="human:you", product="ledger",
                                       data={"title": "Round totals"}))
    tid = created.task_id
    await store.append(Event(kind=Kind.TASK_STARTED, actor="system", product="ledger", task_id=tid,
                             data={"agent": "builder-1"}))
    await store.append(Event(kind=Kind.COMMITTED, actor="builder-1", product="ledger", task_id=tid,
                             data={"sha": "a" * 40}))
    await store.append(Event(kind=Kind.SUBMITTED, actor="builder-1", product="ledger", task_id=tid, data={}))
    verdict = await store.append(Event(kind=Kind.VERDICT, actor="system", product="ledger", task_id=tid,
                                       data={"gate": "tests", "commit": "a" * 40, "outcome": "fail"}))
    out = await remember_from_tool(memory, store, {"text": LEDGER, "tags": ["money"]}, agent="builder-1",
                                   role="builder", task_id=tid, product="ledger")
    assert not out.is_error and out.text == "remembered as L1"
    lesson = await memory.get(1)
    assert (lesson.source_task, lesson.source_commit, lesson.source_event) == (tid, "a" * 40, verdict.id)
    bad = await remember_from_tool(memory, store, {"text": "  "}, agent="builder-1", role="builder", task_id=tid,
                                   product="ledger")
    assert bad.is_error


async def test_session_prompt_injects_lessons_after_the_rules_and_records_their_ids(tmp_path, store):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "00.md").write_text("# THE RULES\nRead first.\n")
    config = FactoryConfig.model_validate({"factory": {"rules": str(rules)}, "memory": {"inject_tokens": 40}})
    k = Knowledge(config, store)
    await k.memory.remember(LEDGER, product="ledger", role="builder", source_task="T1", actor="builder-1")
    await k.memory.remember("Ledger: the accountant wants ROUND_HALF_UP, never banker's rounding, in invoices.",
                            product="ledger", role="builder", source_task="T2", actor="builder-2")
    task = type("T", (), {"id": "T3", "product": "ledger", "title": "Round invoice totals", "body": "half-up, decimal"})
    # builders' lessons are for builders (issue 18: recall follows the roles a lesson is for)
    assert (await k.session_prompt(role="reviewer", agent="reviewer-1", task=task)).lessons == []
    prompt = await k.session_prompt(role="builder", agent="builder-3", task=task)
    assert len(prompt.lessons) == 1  # the 40-token budget holds one of the two
    (lesson,) = prompt.lessons
    s = prompt.system
    assert s.index("THE RULES") < s.index(f"[L{lesson.id}] {lesson.text}") < s.index("ROLE: builder")
    assert f"(source: {lesson.source_actor} on {lesson.source_task}" in s  # who taught it, from which task
    system, facts = await prompt.refresh()
    assert system == s and facts["lesson_ids"] == [lesson.id] and facts["rules_hash"] == prompt.rules.hash
    assert facts["memory_hash"]
    await store.flush()
    assert (await k.memory.get(lesson.id)).use_count == 1


# --- the CLI ----------------------------------------------------------------------------------------


def test_cli_memory_search_edit_delete_export_import(tmp_path, capsys):
    import asyncio
    import json

    f = tmp_path / "factory.toml"
    f.write_text('[factory]\nstore = "memory/cockpit.db"\n')

    async def seed():
        s = await Store.open(tmp_path / "memory" / "cockpit.db")
        try:
            await Memory(s).remember(LEDGER, product="ledger", role="builder", source_task="T1", actor="builder-1")
        finally:
            await s.close()

    asyncio.run(seed())
    assert main(["memory", "search", "decimal rounding", "--json", "--factory", str(f)]) == 0
    (found,) = json.loads(capsys.readouterr().out)
    assert found["id"] == 1 and found["source_task"] == "T1" and found["score"] < 0
    assert main(["memory", "pin", "L1", "--factory", str(f)]) == 0
    assert "[pinned]" in capsys.readouterr().out
    assert main(["memory", "export", "--factory", str(f)]) == 0
    assert (tmp_path / "memory" / "ledger.md").exists()
    assert main(["memory", "delete", "1", "--factory", str(f)]) == 0
    assert main(["memory", "import", "--factory", str(f)]) == 0
    assert "skipped 1" in capsys.readouterr().out
    assert main(["memory", "search", "decimal", "--factory", str(f)]) == 0
    assert "L1" not in capsys.readouterr().out
    assert main(["memory", "edit", "1", "--text", "x", "--factory", str(f)]) == 1
    assert "deleted" in capsys.readouterr().err
