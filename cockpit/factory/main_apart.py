"""Main's tests apart: the change's product code with main's test files, and none of the change's.

The run that checks a change imports the change's test files into the process that also runs and reports
main's tests, and test code can reach anything in its process: the reporter's closure, pytest's items, the
product's functions, main's test modules (adversary sessions D and E landed one way after another, each
closed by a check that the next way went around). This tree takes the question away from that process:
it holds the tested tree with every test file and everything under a test directory (tests/, test/) put
back as main has it: main's test files, helpers and data, and no file of the change's there. Run beside the
change's own run, main's tests then pass or fail by the product code alone; what the change's test code
does in its own run cannot touch them. (Product code still runs in both: a product that reaches into the
runner is the reviewer's to see, and the reach scan names what it finds.)

Built with git plumbing in a private index (nothing checked out, no ref moves): a commit object whose
parent is the tested commit.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from types import MappingProxyType

from ..host import safe_git
from .guards import in_test_dir, is_test_file
from .workspaces import git

_NO_OBJECT = "0" * 40


# what Python imports as code: a file of these the change adds under a test directory is left out of the apart
# tree (main's tests could import it, e.g. behind a try/except ImportError); anything else it adds there (data)
# stays, as the product's own code may read it (adversary F-33: a product table linked into tests/data)
CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyd", ".pyw", ".so", ".pth")


@dataclass(frozen=True)
class TestLayout:
    """What main's runner takes for a test file, from main's baseline (the reporter's start record).

    `python_files` and `doctest_globs` name files pytest imports (or reads) as tests, where it looks for them
    (`testpaths`, when set); `main_files` are the files main's collection found tests in. Main's version is put
    back only for a default test path or a file main collected from, never for a file the patterns merely
    match (adversary G-39: `python_files = *.py` put main's product back); a file the change adds is left out
    when the patterns take it for a test (F-37 `ops_tests.py`, G-38 a doctest `test*.txt`)."""

    python_files: tuple[str, ...] = ()
    testpaths: tuple[str, ...] = ()
    doctest_globs: tuple[str, ...] = ()
    main_files: frozenset[str] = frozenset()

    def runner_test_file(self, path: str) -> bool:
        if self.testpaths and not any(path == t.strip("/") or path.startswith(t.strip("/") + "/")
                                      for t in self.testpaths):
            return False
        return _matches(path, self.python_files) or _matches(path, self.doctest_globs)


def _matches(path: str, patterns: Sequence[str]) -> bool:
    """pytest's `python_files`: a pattern with a slash matches the path, any other the file name."""
    name = path.rsplit("/", 1)[-1]
    return any(fnmatchcase(path if "/" in p else name, p) for p in patterns)


def _is_default_test_path(path: str) -> bool:
    return is_test_file(path) or in_test_dir(path)


def _is_test_code(path: str, layout: TestLayout) -> bool:
    return is_test_file(path) or layout.runner_test_file(path) or path.endswith(CODE_SUFFIXES)


async def _entries(repo: Path, rev: str) -> dict[str, str]:
    """path -> "mode blob" of every file of `rev`."""
    rc, out, err = await safe_git.run("ls-tree", "-r", "-z", "--full-tree", rev, cwd=repo)
    if rc != 0:
        raise OSError(f"git ls-tree {rev}: {err.decode(errors='replace').strip()}")
    found: dict[str, str] = {}
    for entry in out.decode("utf-8", errors="surrogateescape").split("\0"):
        meta, _, path = entry.partition("\t")
        if path:
            mode, _, rest = meta.partition(" ")
            found[path] = f"{mode} {rest.split()[-1]}"
    return found


async def _blob(repo: Path, text: str) -> str:
    rc, out, err = await safe_git.run("hash-object", "-w", "--stdin", cwd=repo, stdin=text.encode())
    if rc != 0:
        raise OSError(f"git hash-object: {err.decode(errors='replace').strip()}")
    return out.decode().strip()


async def main_tests_apart(repo: Path, base: str, tested: str, scratch: Path,
                           renamed: Mapping[str, str] = MappingProxyType({}), layout: TestLayout = TestLayout()
                           ) -> str | None:
    """A commit holding `tested`'s tree with `base`'s test files and test directories in place of its own; None
    when that is `tested`'s tree already (the change touched no test file: its run is main's tests apart).

    `renamed`: main's path -> main's text with the names this change renamed along with its tests followed (the
    gate accepts such a rename: main's tests then run as main wrote them, under the new names).
    `layout`: what main's runner takes for a test file, beside the default patterns (see TestLayout)."""
    on_main, tested_all = await _entries(repo, base), await _entries(repo, tested)
    mains = {p: m for p, m in on_main.items() if _is_default_test_path(p) or p in layout.main_files}
    mine = {p: m for p, m in tested_all.items() if _is_default_test_path(p) or p in layout.main_files
            or (p not in on_main and layout.runner_test_file(p))}
    for path, text in renamed.items():
        if path in mains:
            blob = await _blob(repo, text)
            mains[path] = f"{mains[path].split()[0]} {blob}"
    # the change's own data under a test directory stays (see CODE_SUFFIXES)
    mine = {p: m for p, m in mine.items() if p in mains or _is_test_code(p, layout)}
    if mine == mains:
        return None
    lines = [f"0 {_NO_OBJECT}\t{p}" for p in mine if p not in mains]
    lines += [f"{meta}\t{p}" for p, meta in mains.items() if mine.get(p) != meta]
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="apart-", dir=scratch) as d:
        env = {"GIT_INDEX_FILE": str(Path(d) / "index")}
        await git("read-tree", tested, cwd=repo, env=env)
        rc, _, err = await safe_git.run("update-index", "-z", "--index-info", cwd=repo, env=env,
                                        stdin="".join(f"{line}\0" for line in lines).encode("utf-8",
                                                                                            "surrogateescape"))
        if rc != 0:
            raise OSError(f"git update-index: {err.decode(errors='replace').strip()}")
        tree = await git("write-tree", cwd=repo, env=env)
    return await git("commit-tree", tree, "-p", tested, "-m",
                     f"cockpit: {tested[:12]} with main {base[:12]}'s test files, for main's tests apart",
                     cwd=repo, env={"GIT_AUTHOR_NAME": "cockpit", "GIT_AUTHOR_EMAIL": "cockpit@cockpit.local",
                                    "GIT_COMMITTER_NAME": "cockpit", "GIT_COMMITTER_EMAIL": "cockpit@cockpit.local"})
