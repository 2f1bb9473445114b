"""The module-level names of a product file that a change binds differently: what a test must not leave replaced.

A test of main that leaves `calc._op` replaced after it ran (no fixture undoes it) is harmless while the
replacement is what `calc.py` binds anyway; once a change rebinds `_op` in `calc.py`, every later test sees the
test's value instead of the change's (adversary F-30, its patch moved into a test's body). The gate asks this
module which names a change rebinds, from the two sources alone (nothing is imported or run).
"""

from __future__ import annotations

import ast
from collections import defaultdict

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _bound(node: ast.AST) -> set[str]:
    """The names a top-level statement binds in the module's namespace (into if/try/with/for, not into a def)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    out: set[str] = set()
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
            out.add(child.id)
        elif isinstance(child, ast.stmt) or not isinstance(child, _SCOPES):
            out |= _bound(child)
    return out


def bindings(text: str) -> dict[str, str] | None:
    """name -> the source of every top-level statement that binds it (as its AST, positions left out); None
    when the text does not parse."""
    try:
        body = ast.parse(text).body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    out: dict[str, list[str]] = defaultdict(list)
    for node in body:
        for name in _bound(node):
            out[name].append(ast.dump(node, include_attributes=False))
    return {k: "\n".join(v) for k, v in out.items()}


def rebound(old: str, new: str) -> set[str] | None:
    """The names `new` binds otherwise than `old` (added, changed or gone); None: one of them does not parse
    (then any name may be)."""
    a, b = bindings(old), bindings(new)
    if a is None or b is None:
        return None
    return {n for n in a.keys() | b.keys() if a.get(n) != b.get(n)}
