"""Main's tests by identity: a test of main may not disappear, be skipped, xfailed or rewritten unseen.

Counting tests lets `assert True` replace a real test of the same name. So the baseline is
every node id main collects, and for each the source of its test function as committed on
main (its AST with decorators, the enclosing class's marks, the module's marks). A change
that removes one, rewrites its body, changes its marks, or makes it skip or xfail when it
runs, is named test by test for the human: "tests changed: tests/test_calc.py::test_add,
body rewritten". The sources come from git objects, never from a checkout the tests wrote.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field

from .workspaces import git


def _h(node: ast.AST | list[ast.AST] | None) -> str:
    if node is None:
        return ""
    nodes = node if isinstance(node, list) else [node]
    text = "\n".join(ast.dump(n, annotate_fields=False, include_attributes=False) for n in nodes)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _marky(stmt: ast.stmt) -> bool:
    """A module- or class-level statement that runs when the file is imported (a skip, a mark, a patch of
    the code under test): anything but a definition, an import or the docstring."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
        return False
    return not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))


@dataclass(frozen=True)
class TestSource:
    body: str
    decorators: str
    marks: str  # the class's and module's import-time statements (marks, skips, patches) that apply to it


@dataclass
class FileTests:
    tests: dict[str, TestSource] = field(default_factory=dict)  # "test_add", "TestX::test_y"
    parsed: bool = True


def file_tests(source: str) -> FileTests:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return FileTests(parsed=False)
    out = FileTests()
    module_marks = _h([s for s in tree.body if _marky(s)])

    def funcs(body: list[ast.stmt], prefix: str, marks: str) -> None:
        for s in body:
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body_nodes: list[ast.AST] = [s.args, *s.body]
                out.tests[prefix + s.name] = TestSource(_h(body_nodes), _h(list(s.decorator_list)), marks)
            elif isinstance(s, ast.ClassDef):
                cls_marks = _h([*s.decorator_list, *[b for b in s.body if _marky(b)]])
                funcs(s.body, f"{prefix}{s.name}::", f"{marks}/{cls_marks}")

    funcs(tree.body, "", module_marks)
    return out


def split_id(nodeid: str) -> tuple[str, str]:
    """('tests/test_calc.py', 'TestX::test_y') from a node id, parameters dropped."""
    path, _, rest = nodeid.partition("::")
    return path, rest.split("[", 1)[0]


async def _sources(repo, sha: str, paths: set[str]) -> dict[str, FileTests | None]:
    out: dict[str, FileTests | None] = {}
    for p in sorted(paths):
        rc_text = await git("cat-file", "-p", f"{sha}:{p}", cwd=repo, check=False)
        exists = await git("cat-file", "-t", f"{sha}:{p}", cwd=repo, check=False)
        out[p] = file_tests(rc_text) if exists == "blob" else None
    return out


async def changed_tests(repo, base: str, commit: str, main_ids: list[str], *, candidate_ids: list[str],
                        candidate_outcomes: dict[str, str], main_outcomes: dict[str, str] | None,
                        renamed: dict[str, str] | None = None) -> list[str]:
    """'node id, why' for each test of main the candidate removed, rewrote, re-marked, skipped or xfailed."""
    renamed = renamed or {}  # old path -> new path (git's rename detection)
    files = {split_id(i)[0] for i in main_ids}
    old = await _sources(repo, base, files)
    new = await _sources(repo, commit, {renamed.get(f, f) for f in files})
    have = set(candidate_ids)
    out: list[str] = []
    for nodeid in main_ids:
        path, name = split_id(nodeid)
        moved = renamed.get(path, path)
        new_id = nodeid if moved == path else moved + nodeid[len(path):]
        was, now = old.get(path), new.get(moved)
        why = ""
        if now is None:
            why = "removed (its file is gone)"
        elif new_id not in have:
            why = "removed (no longer collected)"
        elif was is not None and was.parsed and name in was.tests:
            a, b = was.tests[name], now.tests.get(name)
            if b is None:
                why = "removed (its function is gone)"
            elif a.body != b.body:
                why = "body rewritten"
            elif a.decorators != b.decorators:
                why = "decorators changed"
            elif a.marks != b.marks:
                why = "class- or module-level code changed"
        if not why:
            o = candidate_outcomes.get(new_id)
            if o in ("skipped", "xfailed") and (main_outcomes or {}).get(nodeid) != o:
                why = f"{o} when run (it {'was not' if main_outcomes else 'may not have been'} on main)"
        if why:
            out.append(f"{nodeid}, {why}")
    return out
