"""Guarding the tests gate itself, from git alone: a change may not pass by weakening what judges it.

Like CODEOWNERS for the harness, a change blocks for the human, whatever the agents say, when it:

- deletes a test file (or renames it to something no runner collects): "tests removed";
- touches a file the test runner reads besides the tests, or the factory's own files in the
  product (RUNNER_CONFIG, FACTORY_OWN; widened per product with `protected = [...]` in
  factory.toml): "protected file changed".

Nothing of the change runs for this. Which of main's tests are still there, unchanged and
not skipped is judged from the run itself by the tests gate (cockpit.factory.gates).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from .workspaces import git

# Everything a test runner reads besides the tests, per runner: a change to any of it can turn red into
# green without touching a test, so it waits for a human. pyproject.toml is protected whole (it holds
# [tool.pytest*] and the entry points that load plugins); a .pth file or sitecustomize runs at interpreter
# start, before pytest.
RUNNER_CONFIG: dict[str, tuple[str, ...]] = {
    "pytest": ("conftest.py", "pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", "setup.py",
               "sitecustomize.py", "usercustomize.py", "*.pth", ".env", ".envrc", "noxfile.py"),
    "npm": ("package.json", "package-lock.json", ".npmrc", ".mocharc*", "jest.config.*", "vitest.config.*",
            "vite.config.*", "karma.conf.*", "babel.config.*", ".babelrc*", "tsconfig*.json", "jest.setup.*",
            "setupTests.*"),
    "cargo": ("Cargo.toml", "Cargo.lock", ".cargo/**", "build.rs", "rust-toolchain", "rust-toolchain.toml",
              ".config/nextest.toml"),
    "go": ("go.mod", "go.sum", "go.work", "go.work.sum", "main_test.go"),
    "ci": (".github/**", ".ci/**", "Makefile", "justfile", "Taskfile.yml"),
}
# The factory's own files inside a product: the rules an agent is judged by are no agent's to change.
FACTORY_OWN: tuple[str, ...] = (".cockpit/**",)
DEFAULT_PROTECTED: tuple[str, ...] = (*(p for ps in RUNNER_CONFIG.values() for p in ps), *FACTORY_OWN)

# Names that are test code in the usual runners; any .py file under a tests/ or test/ directory too.
TEST_FILE_PATTERNS: tuple[str, ...] = (
    "test_*.py", "*_test.py", "tests/**/*.py", "test/**/*.py", "*_test.go", "*.test.js", "*.test.ts",
    "*.test.jsx", "*.test.tsx", "*.spec.js", "*.spec.ts", "*Test.java", "*_spec.rb",
)

TESTS_REMOVED = "tests removed"
PROTECTED_CHANGED = "protected file changed"
SHADOWS = "a module shadows another"

def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def path_matches(path: str, pattern: str) -> bool:
    """gitignore-like: a pattern without '/' matches a file name at any depth ('conftest.py'), one
    with '/' matches from the repository root ('.github/**', 'tests/**/*.py'); a trailing '/' means
    everything below."""
    pattern = pattern.strip()
    if not pattern:
        return False
    if pattern.endswith("/"):
        pattern += "**"
    pattern = pattern.lstrip("/")
    if "/" not in pattern:
        return fnmatchcase(PurePosixPath(path).name, pattern)
    return bool(_glob_regex(pattern).match(path))


def is_protected(path: str, patterns: tuple[str, ...] | list[str]) -> bool:
    return any(path_matches(path, p) for p in patterns)


def is_test_file(path: str) -> bool:
    return any(path_matches(path, p) for p in TEST_FILE_PATTERNS)


@dataclass(frozen=True)
class Change:
    status: str  # git's letter: A, M, D, R, C, T
    path: str
    old_path: str | None = None


async def changes(repo: Path, base: str, commit: str) -> list[Change]:
    """What `commit` changed since `base`, renames detected."""
    out = await git("diff", "--name-status", "-z", "-M", "--no-color", base, commit, cwd=repo)
    parts = out.split("\0")
    found: list[Change] = []
    i = 0
    while i < len(parts):
        status = parts[i].strip()
        if not status:
            i += 1
            continue
        letter = status[0]
        if letter in "RC" and i + 2 < len(parts):
            found.append(Change(letter, parts[i + 2], parts[i + 1]))
            i += 3
        elif i + 1 < len(parts):
            found.append(Change(letter, parts[i + 1]))
            i += 2
        else:
            break
    return found


@dataclass(frozen=True)
class GuardResult:
    reasons: list[str]  # empty: the change keeps the gate intact
    detail: str
    # one stable key per finding, the same on a later re-merge of the same change: what a human override
    # accepts (cockpit.domain.tasks.carry_override)
    findings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.reasons)


def counts_pytest(command: str) -> bool:
    """The command names pytest (a `make test` may still run it: the tests gate listens anyway)."""
    return bool(re.search(r"py\.?test", command))


class GateGuard:
    """The git-only guard of a factory's tests gate."""

    async def base_of(self, repo: Path, main_branch: str, commit: str) -> str:
        return await git("merge-base", f"refs/heads/{main_branch}", commit, cwd=repo)

    async def static(self, repo: Path, base: str, commit: str, protected: list[str] | tuple[str, ...], *,
                     shadows: bool = True) -> GuardResult:
        """Deleted test files and protected files, from git alone (nothing of the change runs)."""
        reasons: list[str] = []
        lines: list[str] = []
        changed = await changes(repo, base, commit)
        removed = [c.old_path or c.path for c in changed
                   if (c.status == "D" and is_test_file(c.path))
                   or (c.status == "R" and c.old_path and is_test_file(c.old_path) and not is_test_file(c.path))]
        findings: list[str] = []
        if removed:
            reasons.append(TESTS_REMOVED)
            lines.append("test files deleted: " + ", ".join(sorted(removed)))
            findings += [f"deleted:{p}" for p in sorted(removed)]
        touched = sorted({p for c in changed for p in (c.path, c.old_path)
                          if p and is_protected(p, protected)})
        if touched:
            reasons.append(PROTECTED_CHANGED)
            lines.append("protected files changed: " + ", ".join(touched))
            findings += [f"protected:{p}" for p in touched]
        shadowed = await shadowing(repo, base, commit, changed) if shadows else []
        if shadowed:
            reasons.append(SHADOWS)
            lines.append("modules that would be imported instead of another (pytest puts their directory first on "
                         "the import path): " + "; ".join(why for _, why in shadowed))
            findings += [f"shadow:{path}" for path, _ in shadowed]
        return GuardResult(reasons, "\n".join(lines), findings)

    async def check_static(self, repo: Path, main_branch: str, commit: str,
                           protected: list[str] | tuple[str, ...], *, shadows: bool = True) -> tuple[str, GuardResult]:
        """(the main commit `commit` was built from, the git-only verdict): run before any of its code."""
        base = await self.base_of(repo, main_branch, commit)
        return base, await self.static(repo, base, commit, protected, shadows=shadows)


def _import_name(path: str) -> tuple[str, str] | None:
    """(the directory a module would be imported from, its import name) for a .py file or a package's
    __init__.py, else None."""
    parts = path.split("/")
    if not parts[-1].endswith(".py"):
        return None
    if parts[-1] == "__init__.py":
        return ("/".join(parts[:-2]), parts[-2]) if len(parts) >= 2 else None
    return "/".join(parts[:-1]), parts[-1][:-3]


async def shadowing(repo: Path, base: str, commit: str, changed: list[Change]) -> list[tuple[str, str]]:
    """Modules the change adds that pytest would import instead of the product's own or the standard library's:
    each directory holding tests or a conftest.py without an __init__.py goes first on sys.path (pytest's
    default `prepend` import mode), so `tests/calc.py` there is what `from calc import add` in main's unchanged
    tests then imports (an adversary session landed a broken `calc` that way). [(path, why)]."""
    added = [c.path for c in changed if c.status in "ARC"]
    candidates = [(c, _import_name(c)) for c in added]
    candidates = [(c, n) for c, n in candidates if n is not None]
    if not candidates:
        return []
    files = [f for f in (await git("ls-tree", "-r", "--name-only", "-z", commit, cwd=repo)).split("\0") if f]
    dirs_with_init = {f.rsplit("/", 1)[0] if "/" in f else "" for f in files if f.endswith("__init__.py")}
    on_path = {(f.rsplit("/", 1)[0] if "/" in f else "") for f in files
               if is_test_file(f) or f.rsplit("/", 1)[-1] == "conftest.py"}
    on_path = {d for d in on_path if d not in dirs_with_init} | {""}
    main_files = [f for f in (await git("ls-tree", "-r", "--name-only", "-z", base, cwd=repo)).split("\0") if f]
    product: dict[str, str] = {}  # top-level import name -> where it lives on main
    for f in main_files:
        for root in ("", "src"):
            rest = f[len(root) + 1:] if root and f.startswith(root + "/") else (f if not root else None)
            if rest is None:
                continue
            top = rest.split("/")[0]
            if "/" not in rest:  # a module file at the top
                name = top[:-3] if top.endswith(".py") else None
            else:  # a directory holding Python: a package, or a namespace package
                name = top if rest.endswith(".py") else None
            if name and name.isidentifier():
                product.setdefault(name, f"{root + '/' if root else ''}{top}")
    out: list[tuple[str, str]] = []
    for path, (where, name) in candidates:
        if where not in on_path:
            continue
        own = product.get(name)
        here = f"{where}/{name}" if where else name
        if own is not None and own.removesuffix(".py") != here:
            out.append((path, f"{path} shadows the product's module {name} ({own})"))
        elif name in sys.stdlib_module_names:
            out.append((path, f"{path} shadows the standard library's module {name}"))
    return out
