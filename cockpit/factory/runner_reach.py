"""Code that reaches into the test runner: flagged with file:line for the reviewer and the human.

A test suite that registers an `atexit` handler, calls `os._exit`, exits at import time,
writes `sys.modules` or edits where imports come from (`sys.path`, `sys.meta_path`), patches
pytest/_pytest/unittest, installs signal handlers or signals other processes can make the
runner report what it did not do; one that registers or removes plugins at run time, swaps
file descriptors, reads /proc/self or another function's closure or the gc's objects can
reach the cockpit's own reporter. The outcome stream catches the effect
(cockpit.factory.evidence); this scan names the cause, from git objects alone
(nothing of the change runs): only what the change adds counts.

Product code (a file that is no test file and lies in no test directory) that looks at which modules are
loaded or names the runner can behave differently under test: a defeat device passes every honest run, and
no run can tell; the reviewer is shown where. Code that names the gate's own reporter (adversary E-27: `add`
correct only when the reporter's module is loaded) blocks for the human, in any file.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass

from . import off_loop
from .guards import in_test_dir, is_test_file
from .workspaces import git

_RUNNER_MODULES = ("pytest", "_pytest", "unittest", "pluggy")
# where an import looks: a change to it can put a stand-in before the product's module (shown, file:line;
# cockpit.factory.import_shadows judges the stand-in itself, however the path was edited)
_IMPORT_STATE = ("sys.path.", "sys.path[", "sys.meta_path.", "sys.meta_path[", "sys.path_hooks.", "sys.path_hooks[",
                 "sys.path_importer_cache.")
_READS_VARIABLES = ("__closure__", "__globals__", "cell_contents", "f_locals", "f_globals")
# words product code has no business spelling: the runners, the gate's reporter and its environment
# (the cockpit's name alone is not one: a product may well be called so)
_RUNNER_WORDS = re.compile(r"pytest|unittest|pluggy", re.IGNORECASE)
# the gate's reporter by name (its module, its environment): no product or test needs it, so it blocks
_REPORTER_WORDS = re.compile(r"cockpit_outcomes", re.IGNORECASE)
_LIST_EDITS = ("insert", "append", "extend", "__setitem__", "__iadd__", "remove", "pop", "clear", "update",
               "setdefault", "reverse", "sort")


@dataclass(frozen=True)
class Reach:
    path: str
    line: int
    what: str
    code: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}: {self.code}"


# What only code aimed at the cockpit's own reporter does: it blocks for the human (the rest is flagged)
TOO_LARGE = "is too large to be scanned"
REPORTER_REACH = ("names the gate's reporter", "reads another function's variables", "reads the interpreter's objects",
                  "reads its own process's file descriptors", "swaps or closes file descriptors",
                  "registers or removes pytest plugins at run time", TOO_LARGE)
# A file is parsed in a worker thread, and only up to this size: 4 MB of Python took ~19 s and 2.4 GB to walk
# (adversary C-04, on the event loop). A bigger one cannot be vouched for: it waits for the human.
MAX_SCAN_BYTES = 1_000_000


def reaches_reporter(r: Reach) -> bool:
    return r.what.startswith(REPORTER_REACH)


def _dotted(node: ast.AST) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif isinstance(node, ast.Subscript):
        return _dotted(node.value) + "[]"
    return ".".join(reversed(parts))


def _joined(node: ast.AST) -> str | None:
    """The string a `+` of string literals makes, or None when any piece is not a literal."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _joined(node.left), _joined(node.right)
        return None if left is None or right is None else left + right
    return None


class _Scan(ast.NodeVisitor):
    def __init__(self, path: str, lines: list[str]) -> None:
        self.path = path
        self.lines = lines
        self.found: list[Reach] = []
        self.depth = 0  # inside a function body: not import time
        self.conftest = path.rsplit("/", 1)[-1] == "conftest.py"
        self.product = not (is_test_file(path) or in_test_dir(path) or self.conftest)
        self.docstrings: set[int] = set()  # id() of docstring constants: prose, not code

    def add(self, node: ast.AST, what: str) -> None:
        line = getattr(node, "lineno", 0)
        code = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        self.found.append(Reach(self.path, line, what, code[:160]))

    def _doc(self, node: ast.AST) -> None:
        body = getattr(node, "body", None)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            self.docstrings.add(id(body[0].value))

    def visit_Module(self, node: ast.Module) -> None:
        self._doc(node)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._doc(node)
        self.generic_visit(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._doc(node)
        if node.name.startswith("pytest_") and not self.conftest and self.depth == 0:
            self.add(node, f"defines the pytest hook {node.name} outside a conftest")
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.name.split(".")[0] in ("_pytest", "pluggy"):
                self.add(node, f"imports the runner's internals ({a.name})")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        mod = (node.module or "").split(".")[0]
        if mod in ("_pytest", "pluggy"):
            self.add(node, f"imports the runner's internals ({node.module})")
        if mod == "atexit" or (mod == "os" and any(a.name == "_exit" for a in node.names)):
            self.add(node, f"imports {', '.join(a.name for a in node.names)} from {node.module}")
        self.generic_visit(node)

    def _by_name(self, node: ast.Call, name: str) -> None:
        """getattr/setattr/delattr/hasattr: a name spelled whole (or in literal pieces) is judged like the
        attribute written plainly; one built at run time (a call, a slice, an f-string) is named."""
        if len(node.args) < 2:
            return
        target, attr = node.args[0], node.args[1]
        spelled = _joined(attr)
        if spelled is not None:
            if spelled in _READS_VARIABLES:
                self.add(node, f"reads another function's variables ({spelled})")
            elif self.product and spelled == "modules" and _dotted(target) == "sys":
                self.add(node, "product code looks at which modules are loaded (sys.modules): it can tell a test run")
        elif not isinstance(attr, (ast.Name, ast.Attribute)):
            self.add(node, f"reaches an attribute by a name built at run time ({name}): what it reaches is not "
                           "written anywhere")

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        last = name.rsplit(".", 1)[-1]
        if name in ("getattr", "setattr", "delattr", "hasattr", "builtins.getattr", "builtins.setattr"):
            self._by_name(node, name)
        if name.endswith("atexit.register") or name == "atexit.register":
            self.add(node, "registers an atexit handler")
        elif name in ("os._exit", "_exit", "posix._exit"):
            self.add(node, "calls os._exit")
        elif name in ("sys.exit", "exit", "quit", "os.abort") and self.depth == 0:
            self.add(node, f"calls {name} at import time")
        elif name.startswith("signal.") and last in ("signal", "setitimer", "alarm", "pthread_kill", "raise_signal"):
            self.add(node, f"touches signals ({name})")
        elif name in ("os.kill", "os.killpg", "os.getppid"):
            self.add(node, f"signals other processes ({name})")
        elif last in ("unregister", "set_blocked") or (last == "register" and ("plugin" in name or name == "pm.register")):
            self.add(node, f"registers or removes pytest plugins at run time ({last})")
        elif name in ("os.dup2", "os.dup", "os.closerange", "dup2", "closerange"):
            self.add(node, f"swaps or closes file descriptors ({name})")
        elif name in ("gc.get_objects", "gc.get_referrers", "gc.get_referents", "get_referrers", "get_referents"):
            self.add(node, f"reads the interpreter's objects ({name})")
        elif (name.startswith(_IMPORT_STATE) and last in _LIST_EDITS) or name in ("site.addsitedir", "addsitedir"):
            self.add(node, f"changes where imports come from ({name})")
        elif name.startswith("sys.modules.") and last in ("update", "setdefault", "pop", "__setitem__", "clear",
                                                            "__delitem__", "popitem"):
            self.add(node, "writes sys.modules")
        elif last == "setattr" and node.args:
            target = node.args[0]
            root = (target.value.split(".")[0] if isinstance(target, ast.Constant) and isinstance(target.value, str)
                    else _dotted(target).split(".")[0])
            if root in _RUNNER_MODULES or _dotted(target).startswith("sys.modules"):
                self.add(node, f"patches {root}")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in _READS_VARIABLES:
            self.add(node, f"reads another function's variables ({node.attr})")
        elif self.product and isinstance(node.ctx, ast.Load) and _dotted(node) == "sys.modules":
            self.add(node, "product code looks at which modules are loaded (sys.modules): it can tell a test run")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and ("/proc/self/fd" in node.value or "/dev/fd" in node.value):
            self.add(node, "reads its own process's file descriptors (/proc/self/fd, /dev/fd)")
        elif isinstance(node.value, str) and id(node) not in self.docstrings:
            self._words(node, node.value)

    def _words(self, node: ast.AST, text: str) -> bool:
        """Name what `text` spells of the reporter (anywhere) or the runner (in product code); True if it did."""
        if m := _REPORTER_WORDS.search(text):
            self.add(node, f"names the gate's reporter ({m.group(0)!r}): it can find it, or tell the gate's run")
        elif self.product and (m := _RUNNER_WORDS.search(text)):
            self.add(node, f"product code names the test runner ({m.group(0)!r}): it can tell a test run")
        else:
            return False
        return True

    def visit_BinOp(self, node: ast.BinOp) -> None:
        # a name spelled in pieces ("cockpit_" + "outcomes", adversary E-22) is read whole; its pieces are not
        # judged again (each alone names nothing, or the whole says it once)
        text = _joined(node)
        if text is None or not self._words(node, text):
            self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
        if not self._words(node, text):
            self.generic_visit(node)

    def _targets(self, node: ast.AST, targets: list[ast.expr]) -> None:
        for t in targets:
            name = _dotted(t)
            if name.startswith("sys.modules"):
                self.add(node, "writes sys.modules")
            elif name.startswith(_IMPORT_STATE) or name in ("sys.path", "sys.meta_path", "sys.path_hooks"):
                self.add(node, f"changes where imports come from ({name})")
            elif isinstance(t, ast.Attribute) and name.split(".")[0] in _RUNNER_MODULES:
                self.add(node, f"patches {name}")
            elif isinstance(t, ast.Name) and t.id == "pytest_plugins" and self.depth == 0:
                self.add(node, "loads pytest plugins (pytest_plugins)")

    def visit_Assign(self, node: ast.Assign) -> None:
        self._targets(node, node.targets)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._targets(node, [node.target])
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        self._targets(node, node.targets)
        self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        if self.depth == 0 and node.exc is not None and _dotted(getattr(node.exc, "func", node.exc)) == "SystemExit":
            self.add(node, "raises SystemExit at import time")
        self.generic_visit(node)


def scan(path: str, source: str) -> list[Reach]:
    """Every reach into the runner in one Python file; an unparsable file is one finding."""
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError) as exc:
        return [Reach(path, getattr(exc, "lineno", 0) or 0, "does not parse, so it cannot be checked", str(exc)[:160])]
    s = _Scan(path, source.splitlines())
    s.visit(tree)
    return s.found


async def _blob(repo, sha: str, path: str) -> str | None:
    out = await git("cat-file", "-p", f"{sha}:{path}", cwd=repo, check=False)
    return out if out else None


async def added_reach(repo, base: str, commit: str, changed: list[tuple[str, str | None]]) -> list[Reach]:
    """What `commit` adds over `base`: (path, old path or None) per added or modified file."""
    found: list[Reach] = []
    for path, old in changed:
        if not path.endswith((".py", ".pth")):
            continue
        size = await git("cat-file", "-s", f"{commit}:{path}", cwd=repo, check=False)
        if size.isdigit() and int(size) > MAX_SCAN_BYTES:
            found.append(Reach(path, 0, f"{TOO_LARGE} for reach into the test runner ({int(size):,} bytes > "
                                        f"{MAX_SCAN_BYTES:,}): a human looks at it", "(not read)"))
            continue
        new_src = await _blob(repo, commit, path)
        if new_src is None:
            continue
        if path.endswith(".pth"):
            found += [Reach(path, i, "a .pth line the interpreter executes at start-up", line.strip()[:160])
                      for i, line in enumerate(new_src.splitlines(), 1) if line.startswith(("import ", "import\t"))]
            continue
        old_src = await _blob(repo, base, old or path)
        try:
            now = await off_loop.call(scan, path, new_src)
        except off_loop.TooLong as exc:
            found.append(Reach(path, 0, f"{TOO_LARGE} for reach into the test runner ({exc}): a human looks at it",
                               "(not read)"))
            continue
        try:
            before = await off_loop.call(scan, path, old_src) if old_src and len(old_src) <= MAX_SCAN_BYTES else []
        except off_loop.TooLong:
            before = []
        had = Counter((r.what, r.code) for r in before)
        for r in now:
            if had[(r.what, r.code)] > 0:
                had[(r.what, r.code)] -= 1
            else:
                found.append(r)
    return found
