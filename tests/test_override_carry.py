"""A human override across a later merge (issue 20, point 1), in the domain where it is enforced.

The human overrode commit a1 whose guard found one test fewer in tests/test_units.py. Main then moved and a1
conflicts: a builder merges main into it (a2). The override carries to a2 when a2's tests pass, no defect is
open and a2's guard finds nothing the human did not accept; anything new asks the human again.
"""

import pytest

from cockpit.domain import Event, Kind, Refused, TaskState, apply, create
from cockpit.domain.tasks import human_override, may_merge

ACCEPTED = ["test:tests/test_units.py::test_freezing_point_in_kelvin, removed (its function is gone)"]


# what the factory read from git (cockpit.factory.remerge): a2 merges main's m1 into a1, nothing beyond
REMERGE = {"commit": "a2", "parents": ["a1", "m1"], "main_commit": "m1", "merge_tree": "t2",
           "conflicted": ["weather/units.py"], "beyond": []}


def ev(kind, actor="system", **data):
    return Event(kind=kind, actor=actor, product="weather", task_id="T10", data=data)


def overridden_then_sent_back():
    """a1 guard-blocked, overridden by the human, then sent back by the merge queue (a textual conflict)."""
    t = create(ev(Kind.TASK_CREATED, "human:you", title="Round Kelvin to one decimal"))
    t = apply(t, ev(Kind.TASK_STARTED, agent="builder-1"))
    t = apply(t, ev(Kind.COMMITTED, "builder-1", sha="a1"))
    t = apply(t, ev(Kind.SUBMITTED, "builder-1"))
    t = apply(t, ev(Kind.VERDICT, gate="tests", commit="a1", outcome="pass"))
    t = apply(t, ev(Kind.VERDICT, gate="guard", commit="a1", outcome="fail", findings=ACCEPTED))
    t = apply(t, ev(Kind.BLOCKED, reasons=["tests removed"]))
    t = apply(t, ev(Kind.OVERRIDE, "human:you", note="the removed test was a duplicate"))
    assert t.state == TaskState.MERGING and t.rounds_base == t.rounds
    t = apply(t, ev(Kind.SENT_BACK, reason="merge conflict: conflict in weather/units.py", gate="merge"))
    # the builder merges main into a1 and resolves the conflict: a2, then the tests gate passes on it
    t = apply(t, ev(Kind.COMMITTED, "builder-1", sha="a2"))
    t = apply(t, ev(Kind.SUBMITTED, "builder-1"))
    return apply(t, ev(Kind.VERDICT, gate="tests", commit="a2", outcome="pass"))


def test_the_override_carries_to_a_re_merge_with_the_same_guard_finding_and_lands():
    t = overridden_then_sent_back()
    t = apply(t, ev(Kind.VERDICT, gate="guard", commit="a2", outcome="fail", findings=ACCEPTED))
    # without the carry, nothing moves a guard-failed commit on: checked is refused, so it would block again
    with pytest.raises(Refused, match="only a human override lands it"):
        apply(t, ev(Kind.CHECKED))
    assert human_override(t) is None and not may_merge(t)
    t = apply(t, ev(Kind.OVERRIDE_CARRIED, from_commit="a1", remerge=REMERGE))
    assert t.state == TaskState.MERGING
    carried = human_override(t)
    assert carried is not None and carried.commit == "a2" and carried.carried_from == "a1"
    assert carried.actor == "human:you" and carried.note == "the removed test was a duplicate"
    t = apply(t, ev(Kind.VERDICT, gate="merge", commit="m2", source="a2", base="b2", outcome="pass"))
    t = apply(t, ev(Kind.MERGED, merged_commit="m2"))
    assert t.state == TaskState.DONE


@pytest.mark.parametrize("findings, why", [
    ([*ACCEPTED, "test:tests/test_units.py::test_absolute_zero, removed"], "test_absolute_zero"),  # a second test removed
    ([*ACCEPTED, "protected:conftest.py"], "protected:conftest.py"),     # the harness touched as well
    ([], "could not name"),                                              # a failure without findings
])
def test_the_override_does_not_carry_what_the_human_did_not_accept(findings, why):
    t = overridden_then_sent_back()
    t = apply(t, ev(Kind.VERDICT, gate="guard", commit="a2", outcome="fail", findings=findings))
    with pytest.raises(Refused, match=why):
        apply(t, ev(Kind.OVERRIDE_CARRIED, from_commit="a1", remerge=REMERGE))


def test_the_override_does_not_carry_without_passing_tests_a_merge_of_main_or_from_an_agent():
    t = overridden_then_sent_back()
    t = apply(t, ev(Kind.VERDICT, gate="guard", commit="a2", outcome="fail", findings=ACCEPTED))
    with pytest.raises(Refused, match="no re-merge facts from git"):
        apply(t, ev(Kind.OVERRIDE_CARRIED, from_commit="a1"))
    with pytest.raises(Refused, match="not shown to be only a merge of main.*no re-merge facts"):  # a flag is not a fact
        apply(t, ev(Kind.OVERRIDE_CARRIED, from_commit="a1", merges_main=True, beyond=[]))
    with pytest.raises(Refused, match="changes beyond the merge: auth.py"):  # git found more than the merge
        apply(t, ev(Kind.OVERRIDE_CARRIED, from_commit="a1", remerge={**REMERGE, "beyond": ["auth.py"]}))
    with pytest.raises(Refused, match="may not override.carried"):
        apply(t, ev(Kind.OVERRIDE_CARRIED, "builder-1", from_commit="a1", remerge=REMERGE))
    with pytest.raises(Refused, match="no human override of a0"):
        apply(t, ev(Kind.OVERRIDE_CARRIED, from_commit="a0", remerge=REMERGE))
    failing = apply(t, ev(Kind.VERDICT, gate="tests", commit="a2", outcome="fail"))
    with pytest.raises(Refused, match="tests gate has not passed on a2"):
        apply(failing, ev(Kind.OVERRIDE_CARRIED, from_commit="a1", remerge=REMERGE))


REACH = "reach:tests/test_aaa.py: reads a function's closure (__closure__)"


def test_an_override_never_carries_to_code_that_reaches_into_the_reporter(monkeypatch):
    """The human accepted a1 with a reporter-reaching test in it (its finding on a1's guard verdict). A re-merge
    that still holds it: its green tests can be forged from inside the run, so the human's word does not carry
    (the factory already blocks such a commit before the tests; the domain refuses too, whatever the event says)."""
    def accepted_with_reach():
        t = create(ev(Kind.TASK_CREATED, "human:you", title="Round Kelvin to one decimal"))
        t = apply(t, ev(Kind.TASK_STARTED, agent="builder-1"))
        t = apply(t, ev(Kind.COMMITTED, "builder-1", sha="a1"))
        t = apply(t, ev(Kind.SUBMITTED, "builder-1"))
        t = apply(t, ev(Kind.VERDICT, gate="guard", commit="a1", outcome="fail", findings=[*ACCEPTED, REACH]))
        t = apply(t, ev(Kind.BLOCKED, reasons=["reaches into the test reporter"]))
        t = apply(t, ev(Kind.OVERRIDE, "human:you", note="I read that test"))
        t = apply(t, ev(Kind.SENT_BACK, reason="merge conflict: conflict in weather/units.py", gate="merge"))
        t = apply(t, ev(Kind.COMMITTED, "builder-1", sha="a2"))
        t = apply(t, ev(Kind.SUBMITTED, "builder-1"))
        t = apply(t, ev(Kind.VERDICT, gate="tests", commit="a2", outcome="pass"))
        return apply(t, ev(Kind.VERDICT, gate="guard", commit="a2", outcome="fail", findings=[*ACCEPTED, REACH]))

    carry = ev(Kind.OVERRIDE_CARRIED, from_commit="a1", remerge=REMERGE)
    with pytest.raises(Refused, match="reaches into the test reporter.*__closure__"):
        apply(accepted_with_reach(), carry)
    # liveness: with the rule off (no finding counts as reaching), the very same carry lands on the human's word
    monkeypatch.setattr("cockpit.domain.tasks.REACH_FINDING", "\0no finding starts so")
    t = apply(accepted_with_reach(), carry)
    assert t.state == TaskState.MERGING and human_override(t).carried_from == "a1"
