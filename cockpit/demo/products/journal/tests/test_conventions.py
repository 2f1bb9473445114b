"""House rules of this code base, checked on every change.

Entries are synced between phones in different time zones: a naive datetime (no tzinfo)
silently shifts an entry by hours on another phone. Every timestamp is timezone-aware UTC.
"""

import ast
from pathlib import Path

NAIVE = {"utcnow", "today", "utcfromtimestamp"}


def naive_datetime_calls(source: str) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, has_tz = node.func.attr, any(k.arg == "tz" for k in node.keywords)
        if (name in NAIVE or (name == "now" and not node.args and not has_tz)
                or (name == "fromtimestamp" and len(node.args) < 2 and not has_tz)):
            lines.append(node.lineno)
    return lines


def test_no_naive_datetimes():
    offenders = [f"{path}:{n}" for path in sorted(Path("journal").rglob("*.py"))
                 for n in naive_datetime_calls(path.read_text())]
    assert not offenders, (
        "naive datetime at " + ", ".join(offenders) + ": journal stores every timestamp timezone-aware "
        "in UTC; use datetime.now(timezone.utc)")
