"""The task state machine and invariants 1-3, refusals included."""

import pytest

from cockpit.domain import Event, Kind, Refused, TaskState, apply, create, fold, missing_gates


def ev(kind, actor="system", **data):
    return Event(kind=kind, actor=actor, product="shop", task_id="T1", data=data)


def built(sha="a1", builder="builder-1"):
    t = create(ev(Kind.TASK_CREATED, "human:you", title="Add CSV export"))
    t = apply(t, ev(Kind.TASK_STARTED, agent=builder))
    t = apply(t, ev(Kind.COMMITTED, builder, sha=sha))
    return apply(t, ev(Kind.SUBMITTED, builder))


def passed(t, sha):
    t = apply(t, ev(Kind.VERDICT, gate="tests", commit=sha, outcome="pass"))
    return apply(t, ev(Kind.CHECKED))


def test_happy_path_reaches_done_only_through_every_gate():
    t = passed(built("a1"), "a1")
    assert t.state == TaskState.REVIEWING
    assert missing_gates(t) == ["review"]
    with pytest.raises(Refused, match="still needs review"):
        apply(t, ev(Kind.READY))
    t = apply(t, ev(Kind.APPROVED, "reviewer-1", commit="a1", note="ok"))
    t = apply(t, ev(Kind.READY))
    # what is tested is what lands: no merge verdict on exactly m1, no merge
    with pytest.raises(Refused, match="m1 was not tested green"):
        apply(t, ev(Kind.MERGED, merged_commit="m1"))
    t = apply(t, ev(Kind.VERDICT, gate="merge", commit="m0", source="a1", base="b0", outcome="fail"))
    t = apply(t, ev(Kind.VERDICT, gate="merge", commit="m1", source="a1", base="b1", outcome="pass"))
    with pytest.raises(Refused, match="m0 was not tested green"):
        apply(t, ev(Kind.MERGED, merged_commit="m0"))
    with pytest.raises(Refused, match="merge verdict: zz is not the latest commit"):
        apply(t, ev(Kind.VERDICT, gate="merge", commit="m2", source="zz", base="b1", outcome="pass"))
    t = apply(t, ev(Kind.MERGED, merged_commit="m1"))
    assert t.state == TaskState.DONE and t.merged_commit == "m1"


def test_builder_cannot_move_its_own_task_to_done():
    t = passed(built("a1"), "a1")
    for kind, data in [(Kind.READY, {}), (Kind.MERGED, {"merged_commit": "m"}),
                       (Kind.VERDICT, {"gate": "tests", "commit": "a1", "outcome": "pass"})]:
        with pytest.raises(Refused, match="builder-1 \\(builder\\) may not"):
            apply(t, ev(kind, "builder-1", **data))
    with pytest.raises(Refused, match="may not review.approved"):
        apply(t, ev(Kind.APPROVED, "builder-1", commit="a1"))


def test_no_self_approval_even_by_a_reviewer_who_committed():
    t = create(ev(Kind.TASK_CREATED, "human:you", title="x"))
    t = apply(t, ev(Kind.TASK_STARTED, agent="builder-1"))
    t = apply(t, ev(Kind.COMMITTED, "builder-1", sha="a1"))
    t = apply(t, ev(Kind.COMMITTED, "builder-2", sha="a2"))
    t = passed(apply(t, ev(Kind.SUBMITTED, "builder-2")), "a2")
    # an earlier committer cannot approve, even though the latest commit is someone else's
    with pytest.raises(Refused, match="builder-1 \\(builder\\) may not"):
        apply(t, ev(Kind.APPROVED, "builder-1", commit="a2"))
    assert t.authors == ["builder-1", "builder-2"]
    # a human who pushed a commit to the change is excluded too
    t = t.model_copy(update={"authors": [*t.authors, "human:bob"]})
    with pytest.raises(Refused, match="human:bob committed to T1 and may not approve it"):
        apply(t, ev(Kind.APPROVED, "human:bob", commit="a2"))
    t = apply(t, ev(Kind.APPROVED, "reviewer-1", commit="a2"))
    assert missing_gates(t) == []


def test_approval_or_pass_of_an_older_commit_does_not_count():
    t = passed(built("a1"), "a1")
    t = apply(t, ev(Kind.APPROVED, "reviewer-1", commit="a1"))
    # the builder is sent back and pushes a new commit: old approval and verdict stop counting
    t = apply(t, ev(Kind.SENT_BACK, reason="one more thing"))
    t = apply(t, ev(Kind.COMMITTED, "builder-1", sha="a2"))
    assert set(missing_gates(t)) == {"tests", "review"}
    t = apply(t, ev(Kind.SUBMITTED, "builder-1"))
    with pytest.raises(Refused, match="tests gate has not passed on a2"):
        apply(t, ev(Kind.CHECKED))
    t = apply(t, ev(Kind.VERDICT, gate="tests", commit="a2", outcome="fail", detail="1 failed"))
    with pytest.raises(Refused):
        apply(t, ev(Kind.CHECKED))
    t = passed(t, "a2")
    with pytest.raises(Refused, match="approve: a1 is not the latest commit a2"):
        apply(t, ev(Kind.APPROVED, "reviewer-1", commit="a1"))
    assert missing_gates(t) == ["review"]


def test_illegal_transitions_are_refused():
    t = create(ev(Kind.TASK_CREATED, "human:you", title="x"))
    with pytest.raises(Refused, match="nothing committed"):
        apply(apply(t, ev(Kind.TASK_STARTED, agent="builder-1")), ev(Kind.SUBMITTED, "builder-1"))
    with pytest.raises(Refused, match="is queued"):
        apply(t, ev(Kind.COMMITTED, "builder-1", sha="a"))
    with pytest.raises(Refused, match="unknown actor"):
        apply(t, ev(Kind.TASK_STARTED, "root"))
    with pytest.raises(Refused, match="override"):
        apply(t, ev(Kind.OVERRIDE, "human:you", note="ship it"))


def test_human_override_is_recorded_with_who_and_why_and_bound_to_the_commit():
    t = built("a1")
    t = apply(t, ev(Kind.VERDICT, gate="tests", commit="a1", outcome="fail"))
    t = apply(t, ev(Kind.BLOCKED, reasons=["tests"], detail="still failing after 2 rounds"))
    assert t.state == TaskState.BLOCKED and t.blocked_by == ["tests"]
    with pytest.raises(Refused, match="override: missing 'note'"):
        apply(t, ev(Kind.OVERRIDE, "human:you"))
    t = apply(t, ev(Kind.OVERRIDE, "human:alice", note="flaky test, checked by hand"))
    assert t.state == TaskState.MERGING
    assert t.overrides[-1].actor == "human:alice" and t.overrides[-1].commit == "a1"
    t = apply(t, ev(Kind.VERDICT, gate="merge", commit="m1", source="a1", base="b1", outcome="pass"))
    t = apply(t, ev(Kind.MERGED, merged_commit="m1"))
    assert t.state == TaskState.DONE


def test_fold_rebuilds_the_same_task():
    events = [
        ev(Kind.TASK_CREATED, "human:you", title="x"),
        ev(Kind.TASK_STARTED, agent="builder-1"),
        ev(Kind.COMMITTED, "builder-1", sha="a1"),
        ev(Kind.SUBMITTED, "builder-1"),
    ]
    t = create(events[0])
    for e in events[1:]:
        t = apply(t, e)
    assert fold(events)["T1"] == t
