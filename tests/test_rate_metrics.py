"""The rate's metrics on hand-built event logs whose every figure is known (worked out in the comments)."""

from __future__ import annotations

from datetime import timezone

import pytest
from ratelog import BASE, HOUR, HUMAN, WEEK_H, Log

from cockpit.domain import metrics
from cockpit.domain.metrics import COMPOUNDING, FACTORY, FLAT, METRICS, TOO_FEW, WORSE, compute, percentile
from cockpit.domain.tasks import TaskState, fold

UTC = timezone.utc
BIG = {"input_tokens": 1000, "output_tokens": 100}


def two_products() -> Log:
    """shop: T1 first pass; T2 four rounds (tests, a breaker's defect, a block the human answers after
    2 hours); T3 a follow-up that fixes T1 and is then dropped; T2 reopened after merge. blog: T5 first pass."""
    log = Log()
    # T1: queued at 0h, merged at 5h, first pass. Builder: 2 calls of $0.10 settled by the ledger
    # (100 in, 50 out, 300 cache read each), 3 tools. Reviewer: 1 call of $0.05 (200 in, 20 out).
    log.at(0).add("task.created", HUMAN, "shop", "T1", title="CSV export")
    log.later().add("task.started", "system", "shop", "T1", agent="builder-1")
    usage1 = {"input_tokens": 100, "output_tokens": 50, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 300}
    sha = log.later().build("shop", "T1", "builder-1", calls=2, usd=0.10, usage=usage1, tools=3)
    log.later().land("shop", "T1", sha, merge_at=5,
                     review={"calls": 1, "usd": 0.05, "usage": {"input_tokens": 200, "output_tokens": 20}})
    # T2: queued at 6h, merged at 17h. Rounds: 1 + sent back by tests + by a defect + by the human = 4.
    log.at(6).add("task.created", HUMAN, "shop", "T2", title="Round totals")
    log.later().add("task.started", "system", "shop", "T2", agent="builder-2")
    # s1 recalls L1, L2: $0.20 known only from its model.call (no settlement): tests fail
    a = log.later().build("shop", "T2", "builder-2", usd=0.20, usage=BIG, lessons=[1, 2], tools=2, settled=False)
    log.later().verdict("shop", "T2", a, "fail")
    log.later().add("task.sent_back", "system", "shop", "T2", reason="tests failed", gate="tests")
    # s2 recalls L1: passes the tests, then the breaker reproduces a defect
    b = log.later().build("shop", "T2", "builder-2", usd=0.20, usage=BIG, lessons=[1], tools=1, settled=False)
    log.later().verdict("shop", "T2", b, "pass")
    log.later().add("task.checked", "system", "shop", "T2")
    log.later().add("defect.opened", "breaker-1", "shop", "T2", commit=b, title="rounds down", repro_kind="command",
                    reproduction="python -c 'assert 0'", exit_code=1)
    log.later().add("task.sent_back", "system", "shop", "T2", reason="defect D1", gate="defects")
    # s3 recalls nothing; the ledger settled $0.12 where the call said $0.10: the ledger counts
    log.later().add("agent.started", "builder-2", "shop", "T2", agent="builder-2", role="builder")
    log.call("builder-2", "shop", "T2", 0.10, {"input_tokens": 500, "output_tokens": 50, "cache_read_input_tokens": 500},
             settled_usd=0.12)
    log.add("agent.finished", "builder-2", "shop", "T2", agent="builder-2", reason="called submit")
    c = log.sha()
    log.add("task.committed", "builder-2", "shop", "T2", sha=c)
    log.add("task.submitted", "builder-2", "shop", "T2", commit=c)
    log.at(8).verdict("shop", "T2", c, "fail")
    log.add("task.blocked", "system", "shop", "T2", reasons=["tests"], detail="still failing")
    log.at(10).add("task.sent_back", HUMAN, "shop", "T2", reason="use Decimal")  # waited 120 minutes
    # s4 recalls L3 and lands
    d = log.later().build("shop", "T2", "builder-2", usd=0.20, usage=BIG, lessons=[3], settled=False)
    log.later().add("defect.closed", "system", "shop", "T2", defect="D1", commit=d, exit_code=0)
    log.later().land("shop", "T2", d, merge_at=17)
    # T3 fixes T1 (merged before): a defect found after merge; started, then nothing for a week: abandoned
    log.at(20).add("task.created", HUMAN, "shop", "T3", title="Fix CSV quoting", fixes="T1")
    log.later().add("task.started", "system", "shop", "T3", agent="builder-3")
    # T2 reopened by the human: a second defect after merge, and an intervention
    log.at(21).add("task.reopened", HUMAN, "shop", "T2", reason="rounds 2.675 down")
    # blog T5: queued 21.5h, merged 23.5h, first pass; $0.30 settled (300 in, 30 out)
    log.at(21.5).add("task.created", HUMAN, "blog", "T5", title="RSS")
    log.later().add("task.started", "system", "blog", "T5", agent="builder-4")
    sha = log.later().build("blog", "T5", "builder-4", usd=0.30, usage={"input_tokens": 300, "output_tokens": 30})
    log.later().land("blog", "T5", sha, merge_at=23.5)
    return log


UNTIL = BASE + 9 * 24 * HOUR


def test_the_hand_built_log_is_one_the_domain_accepts():
    tasks = fold(two_products().events)
    assert {t: x.state for t, x in tasks.items()} == {
        "T1": TaskState.DONE, "T2": TaskState.DONE, "T3": TaskState.BUILDING, "T5": TaskState.DONE}
    assert tasks["T2"].rounds == 3


def test_every_metric_of_a_product_has_its_known_value():
    rate = compute(two_products().events, since=BASE, until=UNTIL, tz=UTC)
    shop = rate.scopes["shop"].totals
    assert set(shop) == {m.name for m in METRICS}
    expected = {
        "merged": 2,
        "lead_time_p50_h": 8.0,  # 5h and 11h
        "lead_time_p90_h": 10.4,  # 5 + 0.9 * 6
        "first_pass_yield": 0.5,  # T1 yes, T2 no
        "rounds_per_merged": 2.5,  # (1 + 4) / 2
        "defects_breaker": 1,
        "defects_after_merge": 2,  # T3 fixes T1; T2 reopened
        "defects_per_merged": 1.5,  # 3 / 2
        "defect_escape_rate": 2 / 3,
        "interventions": 2,  # the send-back of the blocked T2; the reopen (creating tasks is not one)
        "interventions_per_merged": 1.0,
        "blocked_items": 1,
        "blocked_wait_min": 120.0,
        "usd": 0.97,  # T1 0.10 + 0.10 + 0.05; T2 0.20 + 0.20 + 0.12 (ledger) + 0.20
        "usd_per_merged": 0.485,
        "tokens": 5470,  # T1 2 * 450 + 220; T2 1100 + 1100 + 1050 + 1100
        "tokens_per_merged": 2735,
        "cache_read_ratio": 0.22,  # 1100 read of 5000 input
        "sessions": 6,  # T1 builder and reviewer, T2's four builder sessions
        "lessons_per_session": 4 / 6,  # 2 + 1 + 0 + 1
        "session_fpy_with_lessons": 1 / 3,  # s1 sent back, s2 a defect, s4 merged
        "session_fpy_without_lessons": 0.5,  # T1's builder merged, s3 blocked
        "lesson_lift": 1 / 3 - 1 / 2,
        "model_calls": 7,
        "model_calls_per_merged": 3.5,
        "tool_calls": 6,
        "tool_calls_per_merged": 3.0,
        "commits": 5,
        "commits_per_merged": 2.5,
        "abandoned": 1,  # T3: started, no task event in the 7 days before the end of the window
    }
    assert shop == pytest.approx(expected)


def test_a_product_with_nothing_to_divide_says_none_not_zero():
    blog = compute(two_products().events, since=BASE, until=UNTIL, tz=UTC).scopes["blog"].totals
    assert blog["merged"] == 1 and blog["lead_time_p50_h"] == pytest.approx(2.0)
    assert blog["defects_per_merged"] == 0 and blog["defect_escape_rate"] is None  # no defect found at all
    assert blog["blocked_wait_min"] is None and blog["session_fpy_with_lessons"] is None and blog["lesson_lift"] is None
    assert blog["session_fpy_without_lessons"] == 1.0 and blog["cache_read_ratio"] == 0.0


def test_the_factory_is_every_product_together():
    f = compute(two_products().events, since=BASE, until=UNTIL, tz=UTC).factory.totals
    assert f["merged"] == 3
    assert f["lead_time_p50_h"] == pytest.approx(5.0) and f["lead_time_p90_h"] == pytest.approx(9.8)  # 2, 5, 11
    assert f["first_pass_yield"] == pytest.approx(2 / 3) and f["rounds_per_merged"] == pytest.approx(2.0)
    assert f["usd"] == pytest.approx(1.27) and f["tokens"] == 5800
    assert f["cache_read_ratio"] == pytest.approx(1100 / 5300)
    assert f["sessions"] == 7 and f["lesson_lift"] == pytest.approx(1 / 3 - 2 / 3)
    assert (f["model_calls"], f["tool_calls"], f["commits"], f["abandoned"]) == (8, 6, 6, 1)


def test_days_and_weeks_hold_what_happened_in_them():
    rate = compute(two_products().events, since=BASE, until=UNTIL, tz=UTC)
    shop = rate.scopes["shop"]
    assert [p.key for p in shop.days] == [f"2025-03-{d:02d}" for d in range(3, 13)]
    assert shop.days[0].values["merged"] == 2 and shop.days[0].values["usd"] == pytest.approx(0.97)
    assert all(p.values["merged"] == 0 for p in shop.days[1:])
    # rolling weeks ending at the end of the window: [-5d, 2d) and [2d, 9d)
    assert [p.key for p in shop.weeks] == ["2025-02-26", "2025-03-05"]
    assert shop.series("merged") == [2, 0]
    assert shop.series("first_pass_yield") == [0.5, None]


def test_the_window_leaves_out_what_merged_before_it():
    shop = compute(two_products().events, since=BASE + 9 * HOUR, until=UNTIL, tz=UTC).scopes["shop"].totals
    assert shop["merged"] == 1 and shop["lead_time_p50_h"] == pytest.approx(11.0)  # T2, queued before the window
    assert shop["commits"] == 1 and shop["blocked_items"] == 0  # s4's commit is inside, the block at 8h is not
    assert shop["interventions"] == 2 and shop["defects_after_merge"] == 2


def test_a_blocked_item_still_waiting_counts_until_the_end_of_the_window():
    log = Log()
    log.at(0).add("task.created", HUMAN, "shop", "T1", title="x")
    log.add("task.started", "system", "shop", "T1", agent="builder-1")
    log.at(1).add("task.blocked", "system", "shop", "T1", reasons=["builder"], detail="stopped")
    shop = compute(log.events, since=BASE, until=BASE + 4 * HOUR, tz=UTC).scopes["shop"].totals
    assert shop["blocked_items"] == 1 and shop["blocked_wait_min"] == pytest.approx(180.0)
    assert shop["abandoned"] == 0  # 3 hours is not a week


def test_explicit_abandonment_and_kinds_nobody_knows_are_tolerated():
    log = Log()
    log.at(0).add("task.created", HUMAN, "shop", "T1", title="x")
    log.add("task.started", "system", "shop", "T1", agent="builder-1")
    log.at(2).add("task.abandoned", HUMAN, "shop", "T1", note="not worth it")
    log.add("something.new", "system", "shop", "T1", whatever=[1, 2])
    log.add("model.call", "builder-1", "shop", "T1", usage="not a dict", lesson_ids="nope")
    shop = compute(log.events, tz=UTC).scopes["shop"].totals
    assert shop["abandoned"] == 1 and shop["interventions"] == 1 and shop["model_calls"] == 1
    assert shop["usd"] == 0 and shop["merged"] == 0 and shop["usd_per_merged"] is None


def test_percentile_is_linear_between_ranks():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    assert percentile([7], 90) == 7 and percentile([], 50) is None


# --- trends and verdicts ------------------------------------------------------------------------

# per week: (tasks first pass, sent back by the system, blocked and sent back by the human), lead hours, $ a task
IMPROVING = [((1, 1, 1), 10.0, 1.0), ((3, 1, 1), 7.0, 0.7), ((6, 1, 0), 4.0, 0.4)]


def weeks_of(log: Log, product: str, plan, *, first_id: int) -> int:
    n = first_id
    for w, ((first, system, human), lead, usd) in enumerate(plan):
        for path, count in (("first", first), ("system", system), ("human", human)):
            for i in range(count):
                offset = {"first": 0, "system": 30, "human": 60}[path] + i * 3  # the first at the window's start
                log.task(product, f"{product}-{n}", at=w * WEEK_H + offset, lead_h=lead, path=path, usd=usd)
                n += 1
    return n


def three_week_log() -> Log:
    log = Log()
    weeks_of(log, "up", IMPROVING, first_id=1)
    weeks_of(log, "down", list(reversed(IMPROVING)), first_id=100)
    weeks_of(log, "steady", [((3, 1, 0), 6.0, 0.5)] * 3, first_id=200)
    # tiny: two tasks in the last week only
    log.task("tiny", "tiny-1", at=2 * WEEK_H + 30, lead_h=5)
    log.task("tiny", "tiny-2", at=2 * WEEK_H + 40, lead_h=3, path="system")
    log.events.sort(key=lambda e: e.ts)  # interleave the products by time, as a real log is
    log.events = [e.model_copy(update={"id": i + 1}) for i, e in enumerate(log.events)]
    return log


@pytest.fixture(scope="module")
def three_weeks():
    return compute(three_week_log().events, since=BASE, until=BASE + 3 * WEEK_H * HOUR, tz=UTC)


def test_three_weeks_log_is_valid():
    assert all(t.state == TaskState.DONE for t in fold(three_week_log().events).values())


def test_weekly_series_and_slopes_have_their_known_values(three_weeks):
    up = three_weeks.scopes["up"]
    assert three_weeks.trend_per == "week"
    assert up.series("merged") == [3, 5, 7]
    assert up.series("lead_time_p50_h") == pytest.approx([10, 7, 4])
    assert up.series("first_pass_yield") == pytest.approx([1 / 3, 3 / 5, 6 / 7])
    assert up.series("rounds_per_merged") == pytest.approx([5 / 3, 7 / 5, 8 / 7])
    assert up.series("interventions_per_merged") == pytest.approx([1 / 3, 1 / 5, 0])
    assert up.series("usd_per_merged") == pytest.approx([1.0, 0.7, 0.4])
    t = up.trend["merged"]
    assert (t.slope, t.start, t.end, t.points) == (pytest.approx(2.0), pytest.approx(3.0), pytest.approx(7.0), 3)
    assert t.change == pytest.approx(4 / 3) and t.direction == "improving"
    lead = up.trend["lead_time_p50_h"]  # weighted by the tasks merged each week; exact on a straight line
    assert lead.slope == pytest.approx(-3.0) and lead.change == pytest.approx(-0.6) and lead.direction == "improving"
    # more calls in all (5, 7, 8) has no better side: it is shown rising, not judged
    assert up.series("model_calls") == [5, 7, 8] and up.trend["model_calls"].direction == "rising"
    steady = three_weeks.scopes["steady"]
    assert steady.trend["usd_per_merged"].direction == "flat" and steady.trend["usd_per_merged"].slope == pytest.approx(0)


def test_verdicts_compounding_worse_flat(three_weeks):
    up, down, steady = (three_weeks.scopes[p].verdict for p in ("up", "down", "steady"))
    assert up.verdict == COMPOUNDING and set(up.improving) == set(metrics.CORE) and up.worse == []
    assert up.caveat is None
    assert up.line.startswith("compounding: 6 of 6 improving (merged +133%, lead p50 -60%, first pass +52 pts")
    assert down.verdict == WORSE and set(down.worse) == set(metrics.CORE)
    assert steady.verdict == FLAT and steady.improving == [] and steady.worse == []


def test_too_few_tasks_to_tell(three_weeks):
    tiny = three_weeks.scopes["tiny"].verdict
    assert tiny.verdict == TOO_FEW and tiny.merged == 2 and tiny.periods_with_merges == 1
    assert tiny.caveat.startswith("too few tasks to tell: 2 merged (at least 8 needed) in 1 week with merges")
    assert tiny.line.startswith("too few tasks to tell (leaning flat)")


def test_a_large_enough_sample_in_too_few_periods_is_still_too_few():
    log = Log()
    for i in range(10):
        log.task("burst", f"b{i}", at=2 * WEEK_H + 24 + i, lead_h=2)
    v = compute(log.events, since=BASE, until=BASE + 3 * WEEK_H * HOUR, tz=UTC).scopes["burst"].verdict
    assert v.verdict == TOO_FEW and v.merged == 10 and v.periods_with_merges == 1


def test_a_short_window_trends_per_day():
    log = Log()
    for day in range(4):
        for i in range(day + 1):
            log.task("shop", f"s{day}{i}", at=day * 24 + i, lead_h=3)
    rate = compute(log.events, since=BASE, until=BASE + 4 * 24 * HOUR - 1, tz=UTC)
    shop = rate.scopes["shop"]
    assert rate.trend_per == "day" and shop.trend["merged"].per == "day"
    assert shop.series("merged", "day") == [1, 2, 3, 4]
    assert shop.trend["merged"].slope == pytest.approx(1.0, rel=1e-3)  # the last day ends a second early


def test_a_product_born_late_in_a_week_is_not_counted_as_slow_before_it_existed():
    log = Log()
    # alive from day 5 of week 0 (2 of its 7 days), then 2 a week: its rate is even
    log.task("late", "l1", at=5 * 24, lead_h=2)
    for w in (1, 2):
        for i in range(2):
            log.task("late", f"l{w}{i}", at=w * WEEK_H + 24 + i, lead_h=2)
    late = compute(log.events, since=BASE, until=BASE + 3 * WEEK_H * HOUR, tz=UTC).scopes["late"]
    assert late.series("merged") == [1, 2, 2]
    assert late.weeks[0].coverage == pytest.approx(2 / 7, abs=0.01)
    assert late.trend["merged"].direction == "worse"  # 1 in 2/7 of a week is 3.5 a week, then 2


def test_products_named_but_silent_are_reported_empty():
    rate = compute([], products=["shop"], until=BASE)
    assert set(rate.scopes) == {FACTORY, "shop"}
    assert rate.scopes["shop"].totals["merged"] == 0 and rate.scopes["shop"].verdict.verdict == TOO_FEW
