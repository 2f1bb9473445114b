"""The review stage's words: the breaker's brief, why a task goes back, and the history a blocked task shows.

Pure functions of a Task, so the orchestrator's stages stay short and the texts are
testable without running anything.
"""

from __future__ import annotations

from pathlib import Path

from ..domain.actors import Role, role_of
from ..domain.errors import Refused
from ..domain.tasks import DefectState, Task, tests_verdict

_DETAIL_LIMIT = 4000
_DIFF_LIMIT = 30_000


def round_line(t: Task, max_rounds: int) -> str:
    return f"Round: {t.rounds - t.rounds_base + 1} of {max_rounds}"


def _role(actor: str) -> Role | None:
    try:
        return role_of(actor)
    except Refused:
        return None


def gate_of_feedback(entry: str) -> str:
    """Which gate a feedback entry ('actor: text') came from: review, defects, tests, merge or human."""
    who, _, text = entry.partition(": ")
    role = _role(who)
    if role == Role.REVIEWER:
        return "review"
    if role == Role.BREAKER:
        return "defects"
    if role == Role.HUMAN:
        return "human"
    low = text.lower()
    for gate in ("defect", "merge", "guard"):
        if low.startswith(gate):
            return {"defect": "defects"}.get(gate, gate)
    return "tests"


def history(t: Task, limit: int = _DETAIL_LIMIT) -> str:
    """What happened round by round (feedback, verdicts, defects), newest kept when it must be cut."""
    lines = ["History:"]
    for i, f in enumerate(t.feedback, 1):
        who, _, text = f.partition(": ")
        first = text.strip().splitlines()[0] if text.strip() else ""
        lines.append(f"  {i}. [{gate_of_feedback(f)}] {who}: {first[:300]}")
    if t.verdicts:
        lines.append("Verdicts:")
        lines += [f"  {v.gate:<6} {v.commit[:12]} {v.outcome.value:<4} {v.actor}" for v in t.verdicts[-12:]]
    if t.defects:
        lines.append("Defects:")
        lines += [f"  {d.id} {d.state.value:<6} {d.title} (by {d.actor} on {d.commit[:12]})" for d in t.defects]
    text = "\n".join(lines)
    return text if len(text) <= limit else "[... older history cut ...]\n" + text[-limit:]


def exhausted(t: Task, max_rounds: int) -> tuple[list[str], str]:
    """Block reasons and detail for a task whose builder rounds are spent."""
    last = t.feedback[-1] if t.feedback else ""
    gate = gate_of_feedback(last) if last else "rounds"
    reasons = [gate] if gate != "human" else ["rounds"]
    head = f"still not passing after {max_rounds} rounds. Last feedback:\n{last[:1500]}\n\n"
    return reasons, (head + history(t, _DETAIL_LIMIT - len(head)))[:_DETAIL_LIMIT]


def open_defects_text(t: Task) -> str:
    """The open defects, as the builder must read them: title, how to reproduce, and its failure."""
    parts = []
    for d in t.defects:
        if d.state == DefectState.OPEN:
            parts.append(f"defect {d.id} ({d.actor} on {d.commit[:12]}): {d.title}\nreproduction ({d.kind}):\n"
                         f"{d.reproduction[:1200]}")
    return "\n\n".join(parts)


def breaker_brief(t: Task, diff: str, scratch: Path, max_rounds: int) -> str:
    tv = tests_verdict(t)
    if len(diff) > _DIFF_LIMIT:
        diff = diff[:_DIFF_LIMIT] + f"\n[... diff cut at {_DIFF_LIMIT} characters ...]"
    lines = [
        f"Break task {t.id} on product '{t.product}': {t.title}",
        "",
        t.body.strip() or "(no further description)",
        "",
        f"Commit: {t.commit}",
        round_line(t, max_rounds),
        f"Tests gate on this commit: {tv.outcome.value if tv else 'not run'}",
        f"The product's files are read-only for you. Your scratch directory (writable, outside the product): {scratch}",
        "",
        "The change (diff against main):",
        diff,
        "",
        "Find what is wrong with this commit. Report each defect with report_defect(title, reproduction): a shell "
        "command run from the repository root, or the body of a pytest test file, that FAILS on this commit. The "
        "cockpit re-runs it on a clean checkout and opens the defect only if it really fails. Found nothing? Say so.",
    ]
    closed = [d for d in t.defects if d.state == DefectState.CLOSED]
    if closed:
        lines += ["", "Defects fixed in earlier rounds (their reproductions pass now):"]
        lines += [f"  {d.id}: {d.title}" for d in closed]
    return "\n".join(lines)
