"""One vocabulary: every event kind the cockpit writes or reads is a member of `Kind`, never a literal.

The scan reads cockpit/'s source (AST, no import): a string that spells a kind of `Kind`, or a
kind-shaped string ("word.word") where an event kind goes, is a finding. The first tests plant each
shape of the mistake in a snippet and show the scan finds it, so a scan that finds nothing proves
something. Left alone: docstrings (prose names kinds), `Binding(id=...)` (ids share the dotted
shape) and the store's released migrations (never edited: schema.py says so).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from cockpit.domain.events import Kind

ROOT = Path(__file__).resolve().parent.parent / "cockpit"
DOTTED = re.compile(r"^[a-z_]+\.[a-z_]+$")
QUOTED = re.compile(r"'([a-z_]+\.[a-z_]+)'")  # a kind inside SQL text
KNOWN = {k.value for k in Kind if "." in k.value}  # "note" is also a data key: it is found where a kind goes
KIND_CALLS = {"Event", "_event", "emit", "_emit"}  # their `kind=` (or first argument) is an event kind


def _strings(node: ast.AST) -> list[ast.Constant]:
    return [n for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _name(node: ast.AST) -> str:
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


def _kind_shaped(value: str) -> bool:
    return bool(DOTTED.match(value)) or value == Kind.NOTE.value


def scan(source: str, where: str) -> list[str]:
    """Findings in one module's source: `where:line: what`."""
    tree = ast.parse(source)
    skip: set[int] = set()  # ids of string nodes that are not kinds
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))  # a docstring
        if isinstance(node, ast.Call) and _name(node.func) == "Binding":
            skip.update(id(s) for kw in node.keywords if kw.arg == "id" for s in _strings(kw.value))
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and any(
                _name(t) == "MIGRATIONS" for t in (node.targets if isinstance(node, ast.Assign) else [node.target])):
            skip.update(id(s) for s in _strings(node.value))
    found: list[str] = []

    def add(n: ast.Constant, what: str) -> None:
        found.append(f"{where}:{n.lineno}: {what} {n.value!r}")

    for n in _strings(tree):
        if id(n) in skip:
            continue
        if n.value in KNOWN:
            add(n, "a kind spelled as a literal (use its Kind member):")
        elif any(q in KNOWN for q in QUOTED.findall(n.value)):
            add(n, "a kind spelled inside SQL (pass its Kind member as a parameter):")
    # where a kind goes, a kind-shaped string is a kind, known or not
    for node in ast.walk(tree):
        places: list[ast.AST] = []
        if isinstance(node, ast.Call) and _name(node.func) in KIND_CALLS:
            places += [kw.value for kw in node.keywords if kw.arg == "kind"] + node.args[:1]
        if isinstance(node, ast.Call):
            places += [kw.value for kw in node.keywords if kw.arg == "kinds"]
        if isinstance(node, ast.Compare) and any(_name(x) in ("kind", "k") for x in [node.left, *node.comparators]):
            places += [node.left, *node.comparators]
        if isinstance(node, ast.Assign) and any(_name(t).endswith("KINDS") for t in node.targets):
            places.append(node.value)
        for place in places:
            for s in _strings(place):
                if id(s) not in skip and s.value not in KNOWN and _kind_shaped(s.value):
                    add(s, "an event kind that is not a member of Kind:")
    return found


def scan_tree(root: Path) -> list[str]:
    out: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "events.py" and path.parent.name == "domain":
            continue  # where Kind is declared
        out += scan(path.read_text(encoding="utf-8"), str(path.relative_to(root.parent)))
    return out


def test_the_scan_finds_each_shape_of_a_literal_kind():
    planted = '''
"""A docstring may name agent.paused and rules.changed."""
from textual.binding import Binding
BINDINGS = [Binding("escape", "back", "Back", id="task.back")]
MIGRATIONS: list[str] = ["SELECT 1 FROM events WHERE kind = 'memory.deleted'"]
ev = Event(kind="agent.paused", actor="x")
other = Event(kind="agent.wandered", actor="x")
if ev.kind == "rules.changed":
    pass
if k in ("spend.settled_untasked", "note"):
    pass
ROWS = "SELECT data FROM events WHERE kind = 'gate.verdict'"
NOISY_KINDS = ("agent.snoring",)
store.events(kinds=["task.vanished"])
self.emit("factory.exploded", {}, None)
'''
    found = scan(planted, "planted.py")
    lines = sorted({int(f.split(":")[1]) for f in found})
    assert lines == [6, 7, 8, 10, 12, 13, 14, 15], found
    assert any("'agent.wandered'" in f and "not a member of Kind" in f for f in found)
    assert any("'note'" in f for f in found) and any("inside SQL" in f for f in found)


def test_the_scan_finds_nothing_in_members_and_non_kinds():
    clean = '''
from cockpit.domain.events import Kind
ev = Event(kind=Kind.AGENT_PAUSED, actor="x")
if d.kind == "test_file" or kind == "blob" or p.kind == "@remember":
    pass
KEYS = {"limits.max_agents": 4, "model.mode": "auto"}
note = {"note": "a data key named like the kind"}
'''
    assert scan(clean, "clean.py") == []


def test_no_literal_kind_anywhere_in_cockpit():
    findings = scan_tree(ROOT)
    assert findings == [], "\n".join(findings)
