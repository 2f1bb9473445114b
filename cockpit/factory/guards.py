"""Guarding the tests gate itself, from git alone: a change may not pass by weakening what judges it.

Like CODEOWNERS for the harness, a change blocks for the human, whatever the agents say, when it:

- deletes a test file (or renames it to something no runner collects): "tests removed";
- touches a file the test runner reads besides the tests, or the factory's own files in the
  product (RUNNER_CONFIG, FACTORY_OWN; widened per product with `protected = [...]` in
  factory.toml): "protected file changed";
- adds a module where pytest imports it first that takes the place of one main's tests imported
  (cockpit.factory.import_shadows): "a module shadows another".

Nothing of the change runs for this. Which of main's tests are still there, unchanged and
not skipped is judged from the run itself by the tests gate (cockpit.factory.gates).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from . import import_shadows
from .workspaces import git

# Everything a test runner reads besides the tests, per runner: a change to any of it can turn red into
# green without touching a test, so it waits for a human. pyproject.toml is protected whole (it holds
# [tool.pytest*] and the entry points that load plugins); a .pth file or sitecustomize runs at interpreter
# start, before pytest.
RUNNER_CONFIG: dict[str, tuple[str, ...]] = {
    "pytest": ("conftest.py", "pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", "setup.py",
               "sitecustomize.py", "usercustomize.py", "*.pth", ".env", ".envrc", "noxfile.py",
               # the cockpit's reporter is loaded by its module name (`-p cockpit_outcomes`), and `python -m`
               # puts the checkout first on sys.path: a module of that name in a tree would be loaded instead
               "cockpit_outcomes*", "**/cockpit_outcomes/**"),
    "npm": ("package.json", "package-lock.json", ".npmrc", ".mocharc*", "jest.config.*", "vitest.config.*",
            "vite.config.*", "karma.conf.*", "babel.config.*", ".babelrc*", "tsconfig*.json", "jest.setup.*",
            "setupTests.*"),
    "cargo": ("Cargo.toml", "Cargo.lock", ".cargo/**", "build.rs", "rust-toolchain", "rust-toolchain.toml",
              ".config/nextest.toml"),
    "go": ("go.mod", "go.sum", "go.work", "go.work.sum", "main_test.go"),
    "ci": (".github/**", ".ci/**", "Makefile", "justfile", "Taskfile.yml"),
    # what git does to content between the repository and a checkout (encoding, eol, filters) and what a
    # diff shows (`-diff` hides a file's changes from review): a checkout could run what no reviewer read
    # (adversary C-07, C-08)
    "git": (".gitattributes",),
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
SUPPORT_CHANGED = "test support changed"
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
                     shadows: bool = True, support: bool = True) -> GuardResult:
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
        held = await support_changed(repo, base, changed) if support else []
        if held:
            reasons.append(SUPPORT_CHANGED)
            lines.append("files main's tests may read changed (helpers and data in a test directory; main's tests "
                         "keep their ids and source while what they compare against moves): " + ", ".join(held))
            findings += [f"support:{p}" for p in held]
        shadowed = await import_shadows.shadows(repo, base, commit) if shadows else []
        if shadowed:
            reasons.append(SHADOWS)
            lines.append("modules that would be imported instead of another (pytest puts their directory first on "
                         "the import path): " + "; ".join(why for _, why in shadowed))
            findings += [f"shadow:{path}" for path, _ in shadowed]
        return GuardResult(reasons, "\n".join(lines), findings)

    async def check_static(self, repo: Path, main_branch: str, commit: str,
                           protected: list[str] | tuple[str, ...], *, shadows: bool = True, support: bool = True,
                           base: str | None = None) -> tuple[str, GuardResult]:
        """(the main commit `commit` was built from, the git-only verdict): run before any of its code.
        `base`: what to judge against instead (main with the tasks ahead in a merge train landed)."""
        base = base or await self.base_of(repo, main_branch, commit)
        return base, await self.static(repo, base, commit, protected, shadows=shadows, support=support)


TEST_DIRS = frozenset({"tests", "test"})


def in_test_dir(path: str) -> bool:
    return any(part in TEST_DIRS for part in PurePosixPath(path).parts[:-1])


async def support_changed(repo: Path, base: str, changed: list[Change]) -> list[str]:
    """main's files in a test directory that hold no test and that the change modifies, deletes or renames: the
    helpers and data main's tests read (adversary D-10, D-15). A file with tests is the identity check's (and its
    main copy runs); a file the change adds is its own."""
    from .suite_identity import parsed_tests  # suite_identity imports the git helpers this module does

    held = []
    for c in changed:
        path = c.old_path or c.path
        if c.status not in "MDRT" or not in_test_dir(path):
            continue
        if path.endswith(".py"):
            text = await git("cat-file", "-p", f"{base}:{path}", cwd=repo)
            names = (await parsed_tests(text)).tests
            if any(n.rsplit("::", 1)[-1].startswith("test") for n in names):
                continue
        held.append(f"{path}, {'deleted' if c.status == 'D' else 'renamed' if c.status == 'R' else 'modified'}")
    return sorted(held)
