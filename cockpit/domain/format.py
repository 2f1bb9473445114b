"""Plain text of events, money and titles: one activity line per event, for the screen and the agents' logs.

Pure functions, no Textual: what a line says is decided here and tested without an app (the TUI
and the agent log writer both say it the same way); how it is coloured is the widgets' business.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from .events import Event, Kind

ACTOR_WIDTH = 10
"""Actors are padded to this width so the activity stream reads as columns."""

SKIPPED_KINDS = frozenset({Kind.SPEND_RESERVED})
"""Bookkeeping that is always followed by a line that says more (the settlement)."""

_TOOL_KEYS = ("path", "file_path", "file", "command", "cmd", "pattern", "query", "url", "name")


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def one_line(text: Any, limit: int = 160) -> str:
    """The first non-empty line of `text`, cut to `limit` characters."""
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    if len(first) > limit:
        return first[: limit - 1].rstrip() + "…"
    return first + " …" if len(lines) > 1 else first


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def money(usd: float | None, *, precise: bool = False) -> str:
    """`$1.20`; `precise` shows the fractions of a cent that one model call costs."""
    if usd is None:
        return "–"
    return f"${usd:,.4f}" if precise and abs(usd) < 1 else f"${usd:,.2f}"


def task_money(spend_usd: float, simulated_usd: float = 0.0) -> str:
    """A task's spend: real, or `sim $0.01` when only the offline scripted model worked on it (never summed)."""
    if simulated_usd and not spend_usd:
        return f"sim {money(simulated_usd)}"
    return money(spend_usd) + (f" +sim {money(simulated_usd)}" if simulated_usd else "")


def tokens(n: Any) -> str:
    n = int(n or 0)
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def short_sha(sha: Any) -> str:
    return str(sha or "")[:8]


def tool_summary(name: str, tool_input: Any, limit: int = 100) -> str:
    """`write_file shop/export.py`: the tool and the one argument that says what it touched."""
    arg = ""
    if isinstance(tool_input, dict):
        for key in _TOOL_KEYS:
            value = tool_input.get(key)
            if isinstance(value, str) and value.strip():
                arg = value
                break
        else:
            if tool_input:
                arg = json.dumps(tool_input, default=str, ensure_ascii=False)
    elif tool_input:
        arg = str(tool_input)
    return truncate(f"{name} {one_line(arg, limit)}".strip(), limit + len(name) + 1)


def describe(event: Event) -> str | None:
    """What happened, after the time and the actor; None for events not worth a line."""
    k, d, tid = event.kind, event.data, event.task_id or ""
    on = f" on {tid}" if tid else ""
    if k in SKIPPED_KINDS:
        return None
    if k == Kind.AGENT_TEXT:
        return f"│ {one_line(d.get('text'))}"
    if k == Kind.AGENT_STARTED:
        role = d.get("role")
        return f"▶ started{f' as {role}' if role else ''}{on}"
    if k == Kind.AGENT_TOOL:
        return f"▸ {tool_summary(str(d.get('name', '?')), d.get('input'))}"
    if k == Kind.AGENT_TOOL_RESULT:
        mark = "✗" if d.get("is_error") else "◂"
        summary = one_line(d.get("summary"), 120)
        return f"{mark} {d.get('name', '?')}{': ' + summary if summary else ''}"
    if k == Kind.AGENT_FINISHED:
        reason = d.get("reason")
        return f"■ finished{on}{f' ({reason})' if reason else ''}"
    if k == Kind.GATE_STARTED:
        return f"⚙ {d.get('gate', '?')} gate started{on} @{short_sha(d.get('commit'))}"
    if k == Kind.VERDICT:
        outcome = str(d.get("outcome", "?"))
        detail = one_line(d.get("detail"), 100)
        verdict = "PASS" if outcome == "pass" else "FAIL" if outcome == "fail" else outcome
        return f"⚙ {d.get('gate', '?')} {verdict}{on} @{short_sha(d.get('commit'))}{' — ' + detail if detail else ''}"
    if k == Kind.TASK_CREATED:
        return f"+ {tid} created in {event.product}: {one_line(d.get('title'), 100)}"
    if k == Kind.TASK_STARTED:
        agent = d.get("agent")
        return f"→ {tid} started{f' by {agent}' if agent else ''}"
    if k == Kind.COMMITTED:
        return f"● {tid} committed {short_sha(d.get('sha'))}"
    if k == Kind.SUBMITTED:
        return f"⇢ {tid} submitted for checks"
    if k == Kind.CHECKED:
        return f"✓ {tid} checks passed, in review"
    if k == Kind.APPROVED:
        note = one_line(d.get("note"), 100)
        return f"✓ {tid} approved @{short_sha(d.get('commit'))}{': ' + note if note else ''}"
    if k == Kind.CHANGES_REQUESTED:
        return f"↩ {tid} changes requested: {one_line(d.get('note'), 100)}"
    if k == Kind.READY:
        return f"✓ {tid} ready to merge"
    if k == Kind.SENT_BACK:
        return f"↩ {tid} sent back: {one_line(d.get('reason'), 100)}"
    if k == Kind.BLOCKED:
        reasons = ", ".join(str(r) for r in d.get("reasons") or []) or "?"
        detail = one_line(d.get("detail"), 100)
        return f"⚠ {tid} blocked: {reasons}{' — ' + detail if detail else ''}"
    if k == Kind.OVERRIDE:
        return f"✓ {tid} override: {one_line(d.get('note'), 100)}"
    if k == Kind.OVERRIDE_CARRIED:
        return f"✓ {tid} override carried from {short_sha(d.get('from_commit'))} to the builder's re-merge"
    if k == Kind.RETRY:
        return f"↻ {tid} retry"
    if k == Kind.MERGED:
        return f"✓ {tid} merged {short_sha(d.get('merged_commit'))}"
    if k == Kind.SPEND:
        usd = d.get("usd")
        sim = "sim " if d.get("simulated") else ""
        return f"$ {tid} +{sim}{money(usd, precise=True) if isinstance(usd, (int, float)) else '?'}"
    if k == Kind.MODEL_CALL:
        u = d.get("usage") or {}
        total_in = sum(int(u.get(key) or 0) for key in
                       ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
        usd = d.get("usd")
        parts = [f"◇ {d.get('model', 'model')}{on}", f"{tokens(total_in)} in / {tokens(u.get('output_tokens'))} out"]
        if u.get("cache_read_input_tokens"):
            parts.append(f"{tokens(u['cache_read_input_tokens'])} cached")
        if isinstance(usd, (int, float)):
            parts.append(("sim " if d.get("simulated") else "") + money(usd, precise=True))
        if d.get("stop_reason"):
            parts.append(str(d["stop_reason"]))
        return " · ".join(parts)
    if k == Kind.REFUSED:
        return f"✗ refused {d.get('kind', '?')}{on}: {one_line(d.get('reason'), 120)}"
    if k == Kind.NOTE:
        return f"· {one_line(d.get('text') or d, 120)}"
    if k == Kind.TASK_EDITED:
        changed = ", ".join(f"{key} → {one_line(d[key], 60)}" if key != "body" else "body"
                            for key in ("title", "body", "priority") if key in d)
        return f"✎ {tid} edited: {changed}"
    if k == Kind.DEFECT_OPENED:
        return f"✗ {tid} defect opened @{short_sha(d.get('commit'))}: {one_line(d.get('title'), 100)}"
    if k == Kind.DEFECT_CLOSED:
        return f"✓ {tid} defect {d.get('defect', '?')} closed{' @' + short_sha(d.get('commit')) if d.get('commit') else ''}"
    if k == Kind.DEFECT_REJECTED:
        return f"· {tid} defect not reproduced: {one_line(d.get('title') or d.get('reason'), 100)}"
    if k == Kind.BUDGET_RAISED:
        usd = d.get("usd")
        amount = money(usd) if isinstance(usd, (int, float)) else "?"
        return f"$ budget raised +{amount} ({d.get('scope', '?')}{' ' + str(d['key']) if d.get('key') else ''})"
    if k == Kind.AGENT_STOPPED:
        return f"■ {d.get('agent', '?')} stopped{on}"
    if k in (Kind.AGENT_PAUSED, Kind.AGENT_RESUMED):
        return f"{'⏸' if k == Kind.AGENT_PAUSED else '▶'} {d.get('agent', '?')} {k.split('.')[1]}{on}"
    if k == Kind.RULES_CHANGED:
        files = ", ".join(str(f) for f in d.get("files") or [])
        return f"§ rules changed {short_sha(d.get('old_hash'))} → {short_sha(d.get('new_hash'))}{': ' + files if files else ''}"
    if k == Kind.RULES_ERROR:
        return f"✗ rules error {d.get('file', '?')}:{d.get('line', '?')}: {one_line(d.get('message'), 100)}"
    if k.startswith("memory."):
        lesson = d.get("lesson_id")
        text = one_line(d.get("text"), 80)
        return f"◆ lesson L{lesson} {k.split('.', 1)[1]}{': ' + text if text else ''}"
    # a kind this version does not know: still one honest line
    rest = one_line(json.dumps(d, default=str, ensure_ascii=False), 100) if d else ""
    return f"· {k}{on}{' ' + rest if rest else ''}"


def prefix(ts: float, actor: str) -> str:
    return f"{clock(ts)} {actor:<{ACTOR_WIDTH}}"


def event_line(event: Event) -> str | None:
    """`12:01:02 builder-1  ▸ write_file shop/export.py`, or None when the event is skipped."""
    what = describe(event)
    if what is None:
        return None
    return f"{prefix(event.ts, event.actor)} {what}"


def spend_bar(spent: float, budget: float | None, width: int = 8) -> str:
    """`▕████░░░░▏`: how much of the budget is spent (empty when there is no budget)."""
    if not budget or budget <= 0:
        return ""
    filled = min(round(spent / budget * width), width)
    if spent > 0 and filled == 0:
        filled = 1  # something was spent: never show it as nothing
    return "▕" + "█" * filled + "░" * (width - filled) + "▏"


def spend_line(spent: float, budget: float | None) -> str:
    """`▕██░░░░░░▏ $1.20 / $5.00`, or `$1.20` with no budget."""
    if budget is None:
        return money(spent)
    return f"{spend_bar(spent, budget)} {money(spent)} / {money(budget)}"


def block_summary(reasons: list[str], detail: str, limit: int = 80) -> str:
    """Why a task waits for the human, in one line: the line of the detail that says most (see `key_line`)."""
    why = ", ".join(reasons) or "blocked"
    key = one_line(key_line(detail), limit)
    return f"{why}: {key}" if key else why


_ROUNDS = re.compile(r"after (\d+) rounds")
_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception)\b.*")


def failing_assertion(text: str) -> str:
    """The line that says what failed in a test run's output: pytest's first `E ` line with an assert or an
    error (else its first `E ` line), else a final `SomethingError: ...` line; "" when there is none."""
    e_lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ") and line[1:].strip()]
    for line in e_lines:
        if "assert" in line or "Error" in line:
            return line
    if e_lines:
        return e_lines[0]
    errors = [line.strip() for line in text.splitlines() if _ERROR_LINE.match(line.strip())]
    return errors[-1] if errors else ""


def key_line(detail: str) -> str:
    """The useful part of a block's detail: heads that end in ':' ("still failing ... after 2 rounds:", "... where
    it was built from:") lead to what follows them, and a failing assertion beats everything else."""
    lines = [line.strip() for line in (detail or "").splitlines() if line.strip()]
    if not lines:
        return ""
    rounds = _ROUNDS.search(lines[0])
    prefix = f"after {rounds.group(1)} rounds: " if rounds else ""
    assertion = failing_assertion(detail)
    if assertion:
        return prefix + assertion
    head = lines[1:] if rounds and len(lines) > 1 else lines
    first = head[0]
    if first.endswith(":") and len(head) > 1:
        return f"{prefix}{head[1]} — {first[:-1]}"
    return prefix + first
