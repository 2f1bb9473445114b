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
import io
import tokenize
from copy import deepcopy
from dataclasses import dataclass, field

from . import off_loop
from .workspaces import _run_git, git


def _h(node: ast.AST | list[ast.AST] | None) -> str:
    if node is None:
        return ""
    nodes = node if isinstance(node, list) else [node]
    text = "\n".join(ast.dump(n, annotate_fields=False, include_attributes=False) for n in nodes)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _shape(nodes: list[ast.AST]) -> tuple[str, frozenset[str]]:
    """(hash of the nodes with every identifier blanked, the identifiers)."""
    names: set[str] = set()
    dumps = []
    for n in nodes:
        copy = deepcopy(n)
        for sub in ast.walk(copy):
            for attr in ("id", "attr", "arg"):
                v = getattr(sub, attr, None)
                if isinstance(v, str):
                    names.add(v)
                    setattr(sub, attr, "_")
        dumps.append(ast.dump(copy, annotate_fields=False, include_attributes=False))
    return hashlib.sha256("\n".join(dumps).encode()).hexdigest()[:16], frozenset(names)


def _marky(stmt: ast.stmt) -> bool:
    """A module- or class-level statement that runs when the file is imported (a skip, a mark, a patch of
    the code under test): anything but a definition, an import or the docstring."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
        return False
    return not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))


@dataclass(frozen=True)
class TestSource:
    __test__ = False

    body: str
    decorators: str
    marks: str  # the class's and module's import-time statements (marks, skips, patches) that apply to it
    shape: str = ""  # the body with every name blanked: equal shapes differ in names only
    names: frozenset[str] = frozenset()


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
                out.tests[prefix + s.name] = TestSource(_h(body_nodes), _h(list(s.decorator_list)), marks,
                                                        *_shape(body_nodes))
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
        out[p] = await parsed_tests(rc_text) if exists == "blob" else None
    return out


async def _gone(repo, commit: str, names: set[str]) -> bool:
    """True when none of `names` appears anywhere in `commit`'s tree: they were renamed, not kept beside."""
    for name in sorted(names):
        rc, _, _ = await _run_git("grep", "-q", "-w", "-F", "-e", name, commit, "--", cwd=repo)
        if rc == 0:
            return False
    return True


def _definition(text: str, name: str) -> ast.AST | None:
    """The top-level or class-level `def`/`class` named `name` in `text` (Python source), or None."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return node
    return None


async def _definition_off_loop(text: str, name: str) -> ast.AST | None:
    try:
        return await off_loop.call(_definition, text, name)
    except off_loop.TooLong:
        return None


async def parsed_tests(source: str) -> FileTests:
    """file_tests off the event loop (a thread, or a process for a big file); one that cannot be parsed in
    time counts as not parsed."""
    try:
        return await off_loop.call(file_tests, source)
    except off_loop.TooLong:
        return FileTests(parsed=False)


def _renamed_dump(node: ast.AST, mapping: dict[str, str]) -> str:
    copy = deepcopy(node)
    for sub in ast.walk(copy):
        for attr in ("id", "attr", "arg", "name"):
            v = getattr(sub, attr, None)
            if isinstance(v, str) and v in mapping:
                setattr(sub, attr, mapping[v])
    return ast.dump(copy, annotate_fields=False, include_attributes=False)


async def _defined_in(repo, rev: str, name: str) -> list[str]:
    """The Python files of `rev` with a line defining `name` (def or class)."""
    rc, out, _ = await _run_git("grep", "-l", "-E", "-e", rf"^\s*(async\s+)?(def|class)\s+{name}\b", rev, "--",
                                "*.py", cwd=repo)
    return [line.split(":", 1)[1] for line in out.splitlines() if ":" in line] if rc == 0 else []


async def _same_code_renamed(repo, base: str, commit: str, old_names: set[str], new_names: set[str],
                             renamed_files: dict[str, str]) -> dict[str, str] | None:
    """{old: new} when each of `old_names` is a definition on main that the change renamed in place: in the
    same file (or the file git saw renamed), one of `new_names` defined with the same code but for the new
    names; a module git saw renamed maps too (`calc` -> `arith`). Else None. A test re-pointed at another
    function that merely exists under a new name (a fresh correct copy beside a broken original) is not a
    rename."""
    pairs: dict[str, str] = {}
    where_of: dict[str, tuple[str, str]] = {}  # old name -> (its file on main, that file in the commit)
    for old in sorted(old_names):
        files = await _defined_in(repo, base, old)
        if len(files) != 1:
            return None
        where = renamed_files.get(files[0], files[0])
        was = await _definition_off_loop(await git("cat-file", "-p", f"{base}:{files[0]}", cwd=repo), old)
        rc, text, _ = await _run_git("cat-file", "-p", f"{commit}:{where}", cwd=repo)
        if was is None or rc != 0:
            return None
        match = None
        for new in sorted(new_names - set(pairs.values())):
            now = await _definition_off_loop(text, new)
            if now is not None:
                match = (new, now)
                break
        if match is None:
            return None
        pairs[old] = match[0]
        where_of[old] = (files[0], where)
    for old, new in pairs.items():
        files = await _defined_in(repo, base, old)
        where = renamed_files.get(files[0], files[0])
        was = await _definition_off_loop(await git("cat-file", "-p", f"{base}:{files[0]}", cwd=repo), old)
        now = await _definition_off_loop(await git("cat-file", "-p", f"{commit}:{where}", cwd=repo), new)
        if was is None or now is None or _renamed_dump(was, pairs) != _renamed_dump(now, {}):
            return None
    modules = {}
    for was_file, now_file in where_of.values():
        a, b = _module_name(was_file), _module_name(now_file)
        if a and b and a != b:
            modules[a] = b
    return {**pairs, **modules}


def _module_name(path: str) -> str | None:
    """The last part of a Python file's module name: `calc` for calc.py and for calc/__init__.py."""
    parts = path.split("/")
    if not parts[-1].endswith(".py"):
        return None
    return (parts[-2] if len(parts) > 1 else None) if parts[-1] == "__init__.py" else parts[-1][:-3]


def renamed_source(text: str, mapping: dict[str, str]) -> str:
    """`text` (Python source) with each identifier in `mapping` replaced, nothing else touched (strings and
    comments keep their words): main's version of a test file, made to call the code under its new names."""
    lines = text.splitlines(keepends=True)
    spots: list[tuple[int, int, int, str]] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.NAME and tok.string in mapping and tok.start[0] == tok.end[0]:
                spots.append((tok.start[0] - 1, tok.start[1], tok.end[1], mapping[tok.string]))
    except (tokenize.TokenError, SyntaxError):
        return text
    for row, start, end, new in reversed(spots):
        lines[row] = lines[row][:start] + new + lines[row][end:]
    return "".join(lines)


@dataclass
class StaticChanges:
    why: dict[str, str] = field(default_factory=dict)  # main node id -> what the change did to its source
    renamed: dict[str, str] = field(default_factory=dict)  # main node id -> "old -> new" (renamed with the code)
    renames: dict[str, dict[str, str]] = field(default_factory=dict)  # main file -> {old: new} for its main copy
    gone_files: set[str] = field(default_factory=set)


async def static_changes(repo, base: str, commit: str, main_ids: list[str],
                         renamed_files: dict[str, str] | None = None) -> StaticChanges:
    """From git objects alone: each main test whose source the change rewrote, re-marked or dropped.

    A body that differs only in names the change renamed everywhere (`count_items` gone from the
    whole tree, `total_quantity` in its place, defined in the same file with the same code) follows the
    code it tests: noted, not blocked; `renames` says how to rename main's copy of its file, which still runs
    (a changed import line could point the test at another function of that name)."""
    renamed_files = renamed_files or {}
    files = {split_id(i)[0] for i in main_ids}
    old = await _sources(repo, base, files)
    new = await _sources(repo, commit, {renamed_files.get(f, f) for f in files})
    out = StaticChanges()
    for nodeid in main_ids:
        path, name = split_id(nodeid)
        was, now = old.get(path), new.get(renamed_files.get(path, path))
        if now is None:
            out.why[nodeid] = "removed (its file is gone)"
            out.gone_files.add(path)
            continue
        if was is None or not was.parsed or name not in was.tests:
            continue  # generated or parametrised from elsewhere: the run's ids still cover it
        a, b = was.tests[name], now.tests.get(name)
        if b is None:
            out.why[nodeid] = "removed (its function is gone)"
        elif a.body != b.body:
            old_names, new_names = a.names - b.names, b.names - a.names
            pairs = None
            if a.shape == b.shape and old_names and await _gone(repo, commit, old_names):
                pairs = await _same_code_renamed(repo, base, commit, old_names, new_names, renamed_files)
            mapping = out.renames.setdefault(path, {})
            if pairs is not None and all(mapping.get(k, v) == v for k, v in pairs.items()):
                mapping.update(pairs)
                out.renamed[nodeid] = f"{', '.join(sorted(old_names))} -> {', '.join(sorted(new_names))}"
            else:
                out.why[nodeid] = "body rewritten"
        elif a.decorators != b.decorators:
            out.why[nodeid] = "decorators changed"
        elif a.marks != b.marks:
            out.why[nodeid] = "class- or module-level code changed"
    return out


def changed_tests(main_ids: list[str], static: StaticChanges, *, candidate_ids: list[str],
                  candidate_outcomes: dict[str, str], main_outcomes: dict[str, str] | None,
                  renamed_files: dict[str, str] | None = None, uncollectable: frozenset[str] = frozenset()) -> list[str]:
    """'node id, why' for each test of main the candidate removed, rewrote, re-marked, skipped or xfailed.

    `uncollectable`: files whose collection failed in the candidate's run (an import error): their tests are
    not "removed", the run failed (pytest never exits 0 on a collection error; the cross-check blocks if it
    does)."""
    renamed_files = renamed_files or {}
    have = set(candidate_ids)
    out: list[str] = []
    for nodeid in main_ids:
        path, _ = split_id(nodeid)
        moved = renamed_files.get(path, path)
        new_id = nodeid if moved == path else moved + nodeid[len(path):]
        why = static.why.get(nodeid, "")
        if not why and new_id not in have and moved not in uncollectable:
            why = "removed (no longer collected)"
        if not why:
            o = candidate_outcomes.get(new_id)
            if o in ("skipped", "xfailed") and (main_outcomes or {}).get(nodeid) != o:
                why = f"{o} when run (it {'was not' if main_outcomes else 'may not have been'} on main)"
        if why:
            out.append(f"{nodeid}, {why}")
    return out
