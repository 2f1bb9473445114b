"""`cockpit product add|list|remove`: point the factory at a real git repository, safely.

`add` checks what the factory will rely on before it writes anything: PATH is the top
of a git repository, the main branch exists, the checkout has no uncommitted changes to
tracked files (a merge fast-forwards a checked-out main and would refuse to run over
them), and the test command passes on that branch. The command runs once, exactly as the
tests gate will run it: in the sandbox, on a fresh scratch worktree of the branch, with
only that worktree writable. So "it passed here" means "the gate can pass".

factory.toml is edited with tomlkit, which keeps the user's comments and order, and the
result is validated with the same loader as `cockpit run` before it replaces the file
(atomically): a product entry that would break the factory is never written.

`remove` deletes only the config entry. The product's tasks, events and spend stay in the
store (`cockpit status` still shows them); the orchestrator no longer drives them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tomlkit
import tomlkit.items

from ..config import ConfigError, FactoryConfig, load_factory, too_broad_for_toolchain
from ..host.sandbox import CommandResult, Sandbox
from ..store import readonly
from .test_failure import Diagnosis, diagnose
from .workspaces import GitError, git

PYTEST_COMMAND = "python -m pytest -q"
PRODUCT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ProductError(Exception):
    """A product that cannot be added or found; the message says what to do."""


# --- editing factory.toml, comments kept -----------------------------------------------


def edit_factory(path: Path, change: Callable[[tomlkit.TOMLDocument], None]) -> FactoryConfig:
    """Apply `change` to factory.toml with tomlkit; validate the result like `cockpit run` would,
    then replace the file atomically. Raises ConfigError (naming the real file) and writes nothing
    if the result is not a valid factory."""
    path = Path(path).resolve()
    text = path.read_text(encoding="utf-8")
    doc = tomlkit.parse(text)
    change(doc)
    new_text = tomlkit.dumps(doc)
    fd, tmp_name = tempfile.mkstemp(prefix=".factory-", suffix=".toml", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new_text)
        try:
            load_factory(tmp)
        except ConfigError as e:
            raise ConfigError(str(e).replace(str(tmp), str(path))) from None
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return load_factory(path)


def product_entry(name: str, path: str, test_command: str, branch: str, budget: float | None) -> tomlkit.items.Table:
    t = tomlkit.table()
    t.add("name", name)
    t.add("path", path)
    t.add("test_command", test_command)
    t.add("main_branch", branch)
    if budget is not None:
        t.add("budget_usd", float(budget))
    return t


def append_product(doc: tomlkit.TOMLDocument, entry: tomlkit.items.Table) -> None:
    if "products" not in doc:
        aot = tomlkit.aot()
        aot.append(entry)
        doc.append("products", aot)
        return
    products = doc["products"]
    if isinstance(products, tomlkit.items.AoT):
        if len(products):
            products[-1].add(tomlkit.nl())  # a blank line between entries, as a person would write it
        products.append(entry)
    elif isinstance(products, tomlkit.items.Array):  # `products = [{...}]`, inline
        products.append(dict(entry.unwrap()))
    else:
        raise ConfigError("factory.toml: 'products' is not a list of tables; fix it by hand first")


def remove_product(doc: tomlkit.TOMLDocument, name: str) -> None:
    products = doc.get("products")
    if products is None:
        raise ProductError(f"no product {name!r}")
    for i, entry in enumerate(products):
        if entry.get("name") == name:
            del products[i]
            break
    else:
        raise ProductError(f"no product {name!r}")
    if len(products) == 0:
        del doc["products"]  # tomlkit would otherwise leave `products = []` at the top


# --- the repository ---------------------------------------------------------------------


@dataclass(frozen=True)
class RepoState:
    path: Path
    branch: str
    head: str


async def check_repo(path: Path, branch: str | None) -> RepoState:
    """The checks `product add` and `doctor` share. Raises ProductError naming the fix."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ProductError(f"{path}: no such directory")
    path = path.resolve()
    try:
        top = await git("rev-parse", "--show-toplevel", cwd=path)
    except GitError as e:
        bare = await git("rev-parse", "--is-bare-repository", cwd=path, check=False)
        if bare == "true":
            raise ProductError(f"{path} is a bare repository: give the path of a checkout (git clone {path} DIR)") \
                from None
        if "not a git repository" not in e.stderr:  # e.g. "dubious ownership": git says what to do
            raise ProductError(f"{path}: git refuses it: {e.stderr.strip()}") from None
        raise ProductError(f"{path} is not a git repository: run 'git init -b main' there and commit, "
                           "or give the repository's path") from None
    if Path(top).resolve() != path:
        raise ProductError(f"{path} is inside the repository {top}: give its top level, {top}")
    if branch is None:
        if await git("rev-parse", "--verify", "--quiet", "refs/heads/main^{commit}", cwd=path, check=False):
            branch = "main"
        else:
            current = await git("symbolic-ref", "--quiet", "--short", "HEAD", cwd=path, check=False)
            if not current:
                raise ProductError(f"{path}: no branch 'main' and HEAD is detached: give --branch NAME")
            branch = current
    head = await git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", cwd=path, check=False)
    if not head:
        branches = await git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=path, check=False)
        known = ", ".join(branches.split()) or "none (commit something first)"
        raise ProductError(f"{path}: no branch {branch!r} with a commit (branches: {known}); give --branch NAME")
    dirty = await git("status", "--porcelain", "--untracked-files=no", cwd=path)
    if dirty:
        lines = dirty.splitlines()
        shown = "\n  ".join(lines[:10]) + ("\n  ..." if len(lines) > 10 else "")
        raise ProductError(
            f"{path} has uncommitted changes to tracked files:\n  {shown}\n"
            "Commit or stash them first: merged work fast-forwards this checkout, and git refuses to run over them."
        )
    return RepoState(path, branch, head)


# --- guessing the test command --------------------------------------------------------


@dataclass(frozen=True)
class Guess:
    command: str
    reason: str


def _has_pytest(venv: Path) -> bool:
    return any(venv.glob("lib/python*/site-packages/pytest"))


def _makefile_has_test(text: str) -> bool:
    return re.search(r"^test\s*:(?!=)", text, re.MULTILINE) is not None


def _npm_test_script(text: str) -> bool:
    try:
        script = (json.loads(text).get("scripts") or {}).get("test")
    except (ValueError, AttributeError):
        return False
    # `npm init` writes a test script that only fails: that is no test suite
    return bool(script) and "no test specified" not in script


async def _show(repo: Path, branch: str, name: str) -> str:
    return await git("cat-file", "blob", f"{branch}:{name}", cwd=repo, check=False)  # no textconv


async def guess_test_commands(repo: Path, branch: str) -> list[Guess]:
    """Candidate test commands, best first, from the files on `branch` (what the agents will start from)."""
    top = set((await git("ls-tree", "--name-only", branch, cwd=repo, check=False)).splitlines())
    guesses: list[Guess] = []

    pytest_why = None
    if "pytest.ini" in top:
        pytest_why = "pytest.ini"
    elif "pyproject.toml" in top and "[tool.pytest" in await _show(repo, branch, "pyproject.toml"):
        pytest_why = "[tool.pytest.ini_options] in pyproject.toml"
    elif "setup.cfg" in top and "[tool:pytest]" in await _show(repo, branch, "setup.cfg"):
        pytest_why = "[tool:pytest] in setup.cfg"
    elif "tox.ini" in top and "[pytest]" in await _show(repo, branch, "tox.ini"):
        pytest_why = "[pytest] in tox.ini"
    elif "conftest.py" in top:
        pytest_why = "conftest.py"
    elif "tests" in top or "test" in top:
        pytest_why = "a tests/ directory" if "tests" in top else "a test/ directory"
    if pytest_why:
        venv = repo / ".venv"
        if (venv / "bin" / "python").exists() and _has_pytest(venv):
            guesses.append(Guess(f"{venv / 'bin' / 'python'} -m pytest -q",
                                 f"{pytest_why}; the repository's .venv has pytest"))
        else:
            guesses.append(Guess(PYTEST_COMMAND, f"{pytest_why}; runs with cockpit's own Python (give --test "
                                                 "to use your project's interpreter)"))
    if "package.json" in top and _npm_test_script(await _show(repo, branch, "package.json")):
        guesses.append(Guess("npm test", "a test script in package.json"))
    if "Cargo.toml" in top:
        guesses.append(Guess("cargo test --offline", "Cargo.toml (the sandbox has no network)"))
    if "go.mod" in top:
        guesses.append(Guess("go test ./...", "go.mod"))
    for makefile in ("GNUmakefile", "makefile", "Makefile"):
        if makefile in top and _makefile_has_test(await _show(repo, branch, makefile)):
            guesses.append(Guess("make test", f"a test target in {makefile}"))
            break
    return guesses


# --- running the test command once, as the gate will -------------------------------------


def factory_sandbox(config: FactoryConfig) -> Sandbox:
    """The sandbox the orchestrator builds: the allow-list plus the factory's toolchains; the store,
    rules, worktrees and factory.toml hidden even where they lie inside something shown."""
    hidden = [config.store_path.parent, config.rules_path, config.worktrees_path]
    if config.path is not None:
        hidden.append(config.path)
    box = Sandbox(config.factory.sandbox, hidden=hidden, toolchains=config.factory.toolchains)
    box.tmp_bytes = config.limits.tmp_bytes  # /tmp is memory: bounded per command
    box.disk_scope = config.worktrees_path  # a low disk's message names the largest files of every task's worktree
    return box


def detect_toolchains(command: str, sandbox: Sandbox | None = None,
                      refused: list[tuple[str, str]] | None = None) -> list[str]:
    """Directories the test command's program needs that the sandbox does not show yet
    (e.g. ~/.cargo and ~/.rustup for cargo, an nvm node): what `product add` names in factory.toml.
    A program lying directly in a home or its shared dirs gets none: (that dir, why) goes to `refused`."""
    sandbox = sandbox or Sandbox("bwrap")
    shown = sandbox.visible_roots()
    try:
        words = [w for w in shlex.split(command) if "=" not in w.split("/")[0]]
    except ValueError:
        return []
    if not words:
        return []
    exe = shutil.which(words[0], path=sandbox.command_path()) or shutil.which(words[0])
    if exe is None:
        return []
    home = Path.home()
    found: list[str] = []
    for candidate in (exe, os.path.realpath(exe)):
        # `<root>/bin/tool` shows <root>; a program outside a bin/ (pnpm's ~/.local/share/pnpm/pnpm)
        # shows its own directory only: never what happens to lie two levels up
        here = os.path.dirname(candidate)
        prefix = os.path.dirname(here) if os.path.basename(here) == "bin" else here
        if too_broad_for_toolchain(prefix):
            prefix = here  # never a whole home (keyrings, configs) or /usr/local: its bin/ only
        why = too_broad_for_toolchain(prefix)
        if why:
            if refused is not None and (prefix, why) not in refused:
                refused.append((prefix, why))
            continue
        if prefix not in ("", "/") and not any(prefix == s or prefix.startswith(s + "/") for s in shown):
            found.append(prefix)
    if words[0] in ("cargo", "rustc") and (home / ".rustup").is_dir():
        found.append(str(home / ".rustup"))
    if words[0] == "go" and (home / "go" / "pkg" / "mod").is_dir():
        found.append(str(home / "go" / "pkg" / "mod"))
    out: list[str] = []
    for f in found:
        if f not in out:
            out.append(f)
    return out


def add_toolchains(doc: tomlkit.TOMLDocument, dirs: list[str]) -> None:
    factory = doc.get("factory")
    if factory is None:
        factory = tomlkit.table()
        doc.add("factory", factory)
    have = factory.get("toolchains")
    if have is None:
        factory.add("toolchains", tomlkit.array())
        have = factory["toolchains"]
    for d in dirs:
        if d not in have:
            have.append(d)


async def probe_tests(config: FactoryConfig, repo: Path, branch: str, command: str) -> CommandResult:
    """Run `command` once on a fresh scratch worktree of `branch`, in the factory's sandbox, then remove
    the worktree. Raises SandboxUnavailable rather than run unconfined."""
    if config.factory.sandbox == "bwrap":
        await Sandbox._acheck()  # before touching the repository
    scratch = config.worktrees_path / ".probe" / f"{repo.name}-{uuid.uuid4().hex[:12]}"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    await git("worktree", "add", "--detach", str(scratch), f"refs/heads/{branch}", cwd=repo)
    try:
        return await factory_sandbox(config).run(
            command, cwd=scratch, writable=[scratch], timeout_s=config.limits.test_timeout_s,
            output_cap_bytes=config.limits.output_cap_bytes,
        )  # fmt: skip
    finally:
        await git("worktree", "remove", "--force", str(scratch), cwd=repo, check=False)
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
        await git("worktree", "prune", cwd=repo, check=False)


async def diagnose_failure(result: CommandResult, command: str, repo: RepoState) -> Diagnosis:
    """Why the first run failed, and the likely fix (what is under src/ is read from the branch, not the checkout)."""
    listing = await git("ls-tree", "--name-only", f"refs/heads/{repo.branch}", "src/", cwd=repo.path, check=False)
    src = {line.rsplit("/", 1)[-1] for line in listing.splitlines() if line.strip()}
    return diagnose(result.output, command, src)


def describe_result(r: CommandResult, tail_lines: int = 12) -> str:
    lines = r.output.rstrip("\n").splitlines()[-tail_lines:] if tail_lines > 0 else []
    if r.timed_out:
        verdict = f"timed out after {r.duration_s:.0f} s"
    elif r.ok:
        verdict = f"passed in {r.duration_s:.1f} s"
    else:
        verdict = f"failed with exit code {r.exit_code} in {r.duration_s:.1f} s"
    return verdict + ("\n    " + "\n    ".join(lines) if lines else "")


# --- the store, read-only ------------------------------------------------------------------


def task_counts(config: FactoryConfig) -> dict[str, dict[str, int]]:
    """{product: {state: count}} from the store, read-only; {} when there is no store yet (never creates one)."""
    return readonly.task_counts(config.store_path)


