"""Defects and the guard of the tests gate in the domain: who may open and close, and what blocks `done`."""

import pytest

from cockpit.domain import Event, Kind, Refused, TaskState, apply, create, missing_gates
from cockpit.domain.tasks import DefectState, may_merge


def ev(kind, actor="system", **data):
    return Event(kind=kind, actor=actor, product="shop", task_id="T1", data=data)


def reviewing(sha="a1"):
    t = create(ev(Kind.TASK_CREATED, "human:you", title="Discounts"))
    t = apply(t, ev(Kind.TASK_STARTED, agent="builder-1"))
    t = apply(t, ev(Kind.COMMITTED, "builder-1", sha=sha))
    t = apply(t, ev(Kind.SUBMITTED, "builder-1"))
    t = apply(t, ev(Kind.VERDICT, gate="tests", commit=sha, outcome="pass"))
    return apply(t, ev(Kind.CHECKED))


DEFECT = {"title": "150% off is negative", "repro_kind": "test_file", "reproduction": "def test_x():\n    assert False\n",
          "exit_code": 1, "detail": "1 failed"}


def test_only_a_breaker_opens_a_defect_and_only_on_the_latest_commit():
    t = reviewing("a1")
    for actor in ("builder-1", "reviewer-1", "system", "human:you"):
        with pytest.raises(Refused, match="may not defect.opened"):
            apply(t, ev(Kind.DEFECT_OPENED, actor, commit="a1", **DEFECT))
    with pytest.raises(Refused, match="zz is not the latest commit"):
        apply(t, ev(Kind.DEFECT_OPENED, "breaker-1", commit="zz", **DEFECT))
    # a reproduction that did not fail when the cockpit re-ran it never opens a defect
    with pytest.raises(Refused, match="only a reproduction that failed"):
        apply(t, ev(Kind.DEFECT_OPENED, "breaker-1", commit="a1", **{**DEFECT, "exit_code": 0}))
    t = apply(t, ev(Kind.DEFECT_OPENED, "breaker-1", commit="a1", **DEFECT))
    assert [d.id for d in t.defects] == ["D1"] and t.open_defects == ["D1"]
    assert t.defects[0].actor == "breaker-1" and t.defects[0].commit == "a1"
    assert t.feedback[-1].startswith("breaker-1: defect D1 on a1: 150% off is negative")
    # an approval of the same commit does not let it through while the defect is open
    t = apply(t, ev(Kind.APPROVED, "reviewer-1", commit="a1", note="ok"))
    assert missing_gates(t) == ["defects"] and not may_merge(t)
    with pytest.raises(Refused, match="still needs defects"):
        apply(t, ev(Kind.READY))


def test_a_defect_is_closed_by_the_system_on_a_later_commit_never_by_the_builder():
    t = apply(reviewing("a1"), ev(Kind.DEFECT_OPENED, "breaker-1", commit="a1", **DEFECT))
    t = apply(t, ev(Kind.SENT_BACK, reason="defects open"))
    for actor in ("builder-1", "reviewer-1", "breaker-1"):
        with pytest.raises(Refused, match="may not defect.closed"):
            apply(t, ev(Kind.DEFECT_CLOSED, actor, defect="D1", commit="a1", exit_code=0))
    # not on the commit it was found on: the fix must be a later commit
    with pytest.raises(Refused, match="not a later latest commit"):
        apply(t, ev(Kind.DEFECT_CLOSED, defect="D1", commit="a1", exit_code=0))
    t = apply(t, ev(Kind.COMMITTED, "builder-1", sha="a2"))
    t = apply(t, ev(Kind.SUBMITTED, "builder-1"))
    with pytest.raises(Refused, match="did not pass"):
        apply(t, ev(Kind.DEFECT_CLOSED, defect="D1", commit="a2", exit_code=1))
    with pytest.raises(Refused, match="no open defect 'D9'"):
        apply(t, ev(Kind.DEFECT_CLOSED, defect="D9", commit="a2", exit_code=0))
    t = apply(t, ev(Kind.DEFECT_CLOSED, defect="D1", commit="a2", exit_code=0))
    assert t.open_defects == [] and t.defects[0].state == DefectState.CLOSED
    assert (t.defects[0].closed_by, t.defects[0].closed_commit) == ("system", "a2")
    with pytest.raises(Refused, match="no open defect 'D1'"):
        apply(t, ev(Kind.DEFECT_CLOSED, defect="D1", commit="a2", exit_code=0))


def test_a_human_may_close_a_defect_with_a_note():
    t = apply(reviewing("a1"), ev(Kind.DEFECT_OPENED, "breaker-1", commit="a1", **DEFECT))
    with pytest.raises(Refused, match="missing 'note'"):
        apply(t, ev(Kind.DEFECT_CLOSED, "human:you", defect="D1"))
    t = apply(t, ev(Kind.DEFECT_CLOSED, "human:you", defect="D1", note="works as specified"))
    assert t.open_defects == [] and t.defects[0].closed_by == "human:you"


def test_a_defect_may_arrive_after_the_reviewer_sent_the_task_back_on_the_same_commit():
    t = reviewing("a1")
    t = apply(t, ev(Kind.CHANGES_REQUESTED, "reviewer-1", commit="a1", note="rename it"))
    assert t.state == TaskState.BUILDING
    t = apply(t, ev(Kind.DEFECT_OPENED, "breaker-1", commit="a1", **DEFECT))
    assert t.open_defects == ["D1"] and t.rounds == 1  # no second round for one review
    t = apply(t, ev(Kind.COMMITTED, "builder-1", sha="a2"))
    with pytest.raises(Refused, match="a1 is not the latest commit"):
        apply(t, ev(Kind.DEFECT_OPENED, "breaker-1", commit="a1", **DEFECT))


def test_a_failed_guard_blocks_checked_and_ready_until_a_human_overrides():
    t = create(ev(Kind.TASK_CREATED, "human:you", title="Kelvin"))
    t = apply(t, ev(Kind.TASK_STARTED, agent="builder-1"))
    t = apply(t, ev(Kind.COMMITTED, "builder-1", sha="a1"))
    t = apply(t, ev(Kind.SUBMITTED, "builder-1"))
    t = apply(t, ev(Kind.VERDICT, gate="tests", commit="a1", outcome="pass"))
    t = apply(t, ev(Kind.VERDICT, gate="guard", commit="a1", outcome="fail", detail="2 tests on main, 1 here"))
    with pytest.raises(Refused, match="guard of the tests gate failed"):
        apply(t, ev(Kind.CHECKED))
    t = apply(t, ev(Kind.APPROVED, "reviewer-1", commit="a1", note="fine by me"))
    assert missing_gates(t) == ["guard"] and not may_merge(t)
    t = apply(t, ev(Kind.BLOCKED, reasons=["tests removed"]))
    with pytest.raises(Refused, match="may not human.override"):
        apply(t, ev(Kind.OVERRIDE, "reviewer-1", note="approved already"))
    t = apply(t, ev(Kind.OVERRIDE, "human:you", note="the test was wrong, I checked"))
    assert t.state == TaskState.MERGING and may_merge(t)
