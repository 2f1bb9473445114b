"""Git worktrees per task, commits with the agent's name, and merges that never leave main red.

Everything is real git through asyncio subprocesses (the event loop never blocks), and
every call goes through safe_git: no system or global config, no hooks, fsmonitor, filters'
external diff, textconv, submodule recursion or protocols, and a clean environment. `commit`
refuses a change that adds a gitlink (a nested repository) or a symlink leaving the tree.

Merges are built in a scratch worktree and main only moves by compare-and-swap (or a
fast-forward of the user's checkout), so two tasks merging at once cannot lose either
change, and a main that moved since the gate ran is refused rather than overwritten
(invariant 8 of docs/architecture.md: main only ever moves to what was tested).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..host import gitfile, safe_git

# Kept for callers that build their own git command line: the hardened config of safe_git.
_SAFE_CONFIG = safe_git.HARDENED_CONFIG

MERGER = "cockpit"


class GitError(Exception):
    """A git command failed (the message has the command and git's stderr), or a worktree is unsafe."""

    def __init__(
        self, message: str, *, command: tuple[str, ...] = (), returncode: int | None = None, stderr: str = ""
    ) -> None:
        super().__init__(message)
        self.command = command
        self.returncode = returncode
        self.stderr = stderr

    @classmethod
    def failed(cls, args: tuple[str, ...], cwd: Path, returncode: int, stderr: str) -> GitError:
        return cls(
            f"git {' '.join(args)} (in {cwd}) failed with exit code {returncode}: {stderr.strip()}",
            command=args, returncode=returncode, stderr=stderr,
        )  # fmt: skip


def check_worktree(worktree: Path) -> None:
    """Refuse a worktree whose `.git` link was rewritten by the code inside it.

    Agents write their worktree, `.git` file included. Pointed at a git dir they made (with
    a config naming a filter or fsmonitor command), it would make the cockpit's own git,
    which runs outside the sandbox, execute their code. safe_git hands git the vouched-for
    admin dir on every call anyway; this check makes the refusal say so before anything runs."""
    try:
        gitfile.linked_worktree(worktree)
    except gitfile.UnsafeGitFile as exc:
        raise GitError(f"refusing to run git in {os.path.realpath(worktree)}: {exc}") from exc


class UnsafeChange(GitError):
    """`commit` refused the change: it would make the cockpit's git or file access leave the tree."""


def _nested_git(worktree: Path) -> str | None:
    """Why the tree may hold a nested repository: the first `.git` (any case) below its top,
    found without following links, or a directory that cannot be read; else None.
    The whole tree is walked (a limit would let one hide deep down); callers run it in a thread."""
    top = os.path.realpath(worktree)
    unreadable: list[str] = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False, onerror=lambda e: unreadable.append(
            os.path.relpath(e.filename, top) if e.filename else "?")):
        for name in dirnames + filenames:
            if name.lower() == ".git" and dirpath != top:
                rel = os.path.relpath(os.path.join(dirpath, name), top)
                return (f"{rel} is a nested git repository (a .git inside the worktree); git run by the cockpit "
                        f"would read its config and hooks. Remove it (e.g. rm -rf {rel}) and commit again")
        if dirpath == top:
            dirnames[:] = [d for d in dirnames if d.lower() != ".git"]
    if unreadable:  # what cannot be looked into cannot be vouched for
        return (f"{unreadable[0]} cannot be read, so it may hide a nested git repository; make it readable "
                f"(chmod -R u+rX {unreadable[0]}) and commit again")
    return None


def _link_leaves(path: str, target: str, links: set[str]) -> bool:
    """Whether symlink `path` (relative to the top) with content `target` may point outside the tree.

    Lexically: absolute, or more `..` than it has depth. And through another symlink of the
    tree (`links`) followed by anything: `b/../..` with `b -> .` climbs where the text does not."""
    if not target or target.startswith("/") or "\0" in target:
        return True
    stack = path.split("/")[:-1]
    parts = [p for p in target.split("/") if p not in ("", ".")]
    for i, part in enumerate(parts):
        if part == "..":
            if not stack:
                return True
            stack.pop()
            continue
        stack.append(part)
        if "/".join(stack) in links and i < len(parts) - 1:
            return True
    return False


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return safe_git.hardened_env(extra)


async def _run_git(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, stdin: bytes | None = None
) -> tuple[int, str, str]:
    rc, out, err = await safe_git.run(*args, cwd=cwd, env=env, stdin=stdin)
    return rc, out.decode("utf-8", errors="replace"), err.decode("utf-8", errors="replace")


async def git(*args: str, cwd: Path, check: bool = True, env: Mapping[str, str] | None = None) -> str:
    """Run git with hooks off and a clean env; return stdout stripped, GitError if check and it fails."""
    rc, out, err = await _run_git(*args, cwd=cwd, env=env)
    if check and rc != 0:
        raise GitError.failed(args, cwd, rc, err or out)
    return out.strip()


@dataclass(frozen=True)
class MergeResult:
    ok: bool
    merged_commit: str | None
    conflict_files: list[str] = field(default_factory=list)
    detail: str = ""
    in_the_way: bool = False  # main did not move: the user's checkout refused (its files are in the way)


def _identity(name: str) -> dict[str, str]:
    clean = re.sub(r"[<>\n\r]", "", name).strip() or "agent"
    email = re.sub(r"[^A-Za-z0-9._+-]", "-", clean) + "@cockpit.local"
    return {
        "GIT_AUTHOR_NAME": clean,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": clean,
        "GIT_COMMITTER_EMAIL": email,
    }


def _same_path(a: str | Path, b: str | Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


async def _worktrees(repo: Path) -> list[dict[str, str]]:
    """`git worktree list --porcelain` as dicts: worktree, HEAD, branch, bare, detached..."""
    out = await git("worktree", "list", "--porcelain", cwd=repo)
    entries: list[dict[str, str]] = []
    for block in out.split("\n\n"):
        entry: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            entry[key] = value
        if "worktree" in entry:
            entries.append(entry)
    return entries


@dataclass(frozen=True)
class PreparedMerge:
    """A merge built but not landed: `merged` is the sha to test; `scratch` its worktree."""

    base: str
    merged: str | None
    scratch: Path | None
    conflict_files: list[str]
    detail: str
    already: bool = False


_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()


def worktree_lock(repo: Path) -> asyncio.Lock:
    """The lock every add, remove and prune of a worktree of `repo` holds (one per repository and event loop).

    `git worktree prune` run while another `git worktree add` is half done deletes the new worktree's admin
    files, and two adds race on `.git/worktrees`: seen with two tasks of one product starting at once."""
    locks = _LOCKS.setdefault(asyncio.get_running_loop(), {})
    key = os.path.realpath(repo)
    lock = locks.get(key)
    if lock is None:
        lock = locks[key] = asyncio.Lock()
    return lock


async def remove_checkout(repo: Path, path: Path) -> None:
    """Remove a checkout the cockpit made (a gate's, the merge queue's) and prune git's record of it.

    When the calling task is being cancelled (an agent stopped, the cockpit quitting) nothing is awaited: seen at
    quit, two gate runs of one product, both cancelled in this cleanup, waited on the worktree lock for good, and
    the process with them. The files go at once; git forgets the checkout at its next prune (every add and
    remove prunes, and the next start clears the scratch area)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        shutil.rmtree(path, ignore_errors=True)
        return
    async with worktree_lock(repo):
        await git("worktree", "remove", "--force", str(path), cwd=repo, check=False)
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        await git("worktree", "prune", cwd=repo, check=False)



class MergeConflicted(Exception):
    """Main merged into a task branch with conflicts left in the files for the builder to resolve."""

    def __init__(self, files: list[str]):
        super().__init__(f"conflict in {', '.join(files)}")
        self.files = files

class Workspaces:
    """Task worktrees under root/<product>/<task_id>, on branch cockpit/<task_id>."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()  # git resolves relative paths against the repo
        safe_git.guard_root(self.root)

    def _admin(self, repo: Path) -> asyncio.Lock:
        return worktree_lock(repo)

    def branch_for(self, task_id: str) -> str:
        return f"cockpit/{task_id}"

    def path_for(self, product: str, task_id: str) -> Path:
        return self.root / product / task_id

    async def ensure(self, product: str, repo: Path, main_branch: str, task_id: str) -> Path:
        """Create the task's branch and worktree if missing; safe to call again after a crash."""
        async with self._admin(repo):
            return await self._ensure(product, repo, main_branch, task_id)

    async def _ensure(self, product: str, repo: Path, main_branch: str, task_id: str) -> Path:
        path = self.path_for(product, task_id)
        branch = self.branch_for(task_id)
        await git("worktree", "prune", cwd=repo)  # forget worktrees whose directory is gone
        for wt in await _worktrees(repo):
            if _same_path(wt["worktree"], path):
                return path
        rc, _, _ = await _run_git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", cwd=repo)
        if rc != 0:
            await git("branch", branch, f"refs/heads/{main_branch}", cwd=repo)
        if path.exists():
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()  # left by a crash before git wrote anything
            else:
                raise GitError(f"{path} exists but is not a worktree of {repo}; move it away and retry")
        path.parent.mkdir(parents=True, exist_ok=True)
        await git("worktree", "add", str(path), branch, cwd=repo)
        return path

    async def commit(self, worktree: Path, message: str, author: str, *, main_branch: str | None = None) -> str | None:
        """Commit everything in the worktree as `author` (with a Cockpit-Agent trailer); None if nothing changed.

        Refuses (UnsafeChange, nothing committed, the index reset) a nested `.git`, a gitlink
        unless `main_branch` (else HEAD) already has submodules, a symlink leaving the tree, and compiled
        code (bytecode, extension modules: `compiled_code`)."""
        check_worktree(worktree)
        nested = await asyncio.to_thread(_nested_git, worktree)
        if nested:
            raise UnsafeChange(f"refused: {nested}")
        await git("add", "-A", cwd=worktree)
        # index against HEAD only (no submodule is entered), so a staged gitlink counts as a change
        rc, _, err = await _run_git("diff", "--cached", "--quiet", "--ignore-submodules=none", cwd=worktree)
        if rc == 0:
            return None
        if rc != 1:
            raise GitError.failed(("diff", "--cached", "--quiet"), worktree, rc, err)
        why = await self._unsafe_staged(worktree, main_branch)
        if why:
            await _run_git("reset", "-q", cwd=worktree)
            raise UnsafeChange(f"refused: {why}")
        ident = _identity(author)
        text = f"{message.rstrip()}\n\nCockpit-Agent: {author}\n"
        await git(
            # --allow-empty: the change was seen above; git's own check ignores a gitlink-only change
            "commit", "--no-verify", "--quiet", "--cleanup=whitespace", "--allow-empty",
            "--author", f"{ident['GIT_AUTHOR_NAME']} <{ident['GIT_AUTHOR_EMAIL']}>",
            "-m", text,
            cwd=worktree, env=ident,
        )  # fmt: skip
        return await self.head(worktree)

    async def _unsafe_staged(self, worktree: Path, main_branch: str | None) -> str | None:
        """Why the staged change may not be committed (a gitlink, a symlink leaving the tree), else None."""
        rc, raw, _ = await _run_git("diff", "--cached", "--raw", "-z", "--no-renames", "--no-abbrev",
                                    "--ignore-submodules=none", cwd=worktree)
        fields = raw.split("\0")
        links: set[str] | None = None
        i = 0
        while i + 1 < len(fields):
            meta, path = fields[i], fields[i + 1]
            i += 2
            parts = meta.lstrip(":").split()
            if len(parts) < 5 or parts[4].startswith("D"):
                continue
            new_mode, new_sha = parts[1], parts[3]
            compiled = compiled_code(path)
            if compiled:
                return (f"{path} is {compiled}: what runs would not be the source a reviewer reads (Python "
                        "imports it instead of, or without, the .py); commit the source only, and build "
                        "compiled parts in the product's test or build command")
            if new_mode == "160000" and not await self._has_submodules(worktree, main_branch):
                return (f"{path} is a gitlink (a submodule or nested repository) and "
                        f"{main_branch or 'this branch'} has no submodules; commit its files instead")
            if new_mode == "120000":
                _, target, _ = await _run_git("cat-file", "blob", new_sha, cwd=worktree)
                if links is None:
                    staged = await git("ls-files", "-s", "-z", cwd=worktree)
                    links = {e.split("\t", 1)[1] for e in staged.split("\0") if e.startswith("120000 ")}
                if _link_leaves(path, target, links):
                    return (f"{path} is a symlink to {target!r}, which leaves the worktree; "
                            "link only to files inside it, or copy the file")
        return None

    async def _has_submodules(self, worktree: Path, main_branch: str | None) -> bool:
        ref = f"refs/heads/{main_branch}" if main_branch else "HEAD"
        rc, _, _ = await _run_git("cat-file", "-e", f"{ref}:.gitmodules", cwd=worktree)
        return rc == 0

    async def sync_main(self, worktree: Path, main_branch: str, author: str, *, keep_conflicts: bool = False) -> str | None:
        """Merge main into the task branch as `author`; None if already up to date. A conflict is
        aborted (the tree is left as it was) and raised with the conflicting files; with `keep_conflicts`
        the merge stays in progress instead (markers in the files, raised as MergeConflicted) so a builder
        can resolve it: its next commit is the merge."""
        check_worktree(worktree)
        ref = f"refs/heads/{main_branch}"
        rc, _, _ = await _run_git("merge-base", "--is-ancestor", ref, "HEAD", cwd=worktree)
        if rc == 0:
            return None
        ident = _identity(author)
        rc, out, err = await _run_git("merge", "--no-ff", "--no-edit", "-m",
                                      f"Merge {main_branch} into the task branch\n\nCockpit-Agent: {author}\n",
                                      ref, cwd=worktree, env=ident)
        if rc != 0:
            conflicts = await git("diff", "--name-only", "--diff-filter=U", "-z", cwd=worktree, check=False)
            files = [f for f in conflicts.split("\0") if f]
            if keep_conflicts and files:
                raise MergeConflicted(files)
            await git("merge", "--abort", cwd=worktree, check=False)
            raise GitError.failed(("merge", ref), worktree, rc,
                                  f"conflict in {', '.join(files)}" if files else (err or out).strip())
        return await self.head(worktree)

    async def head(self, worktree: Path) -> str:
        check_worktree(worktree)
        return await git("rev-parse", "HEAD", cwd=worktree)

    async def changed_files(self, repo: Path, base: str, head: str) -> list[str]:
        """Files the change touched since it forked from `base` (three-dot: others' merges don't count).

        Renames are listed as a deletion and an addition, so a deleted test always shows."""
        out = await git("diff", "--name-only", "--no-renames", "-z", f"{base}...{head}", "--", cwd=repo)
        return [name for name in out.split("\0") if name]

    async def diff(self, repo: Path, base: str, head: str) -> str:
        """The change's diff since it forked from `base`; no external diff or textconv programs run."""
        return await git(
            "diff", "--no-color", "--no-ext-diff", "--no-textconv", f"{base}...{head}", "--", cwd=repo
        )

    async def merge(self, repo: Path, main_branch: str, commit: str, message: str) -> MergeResult:
        """Merge `commit` into main_branch without ever losing a concurrent change to main."""
        ref = f"refs/heads/{main_branch}"
        old = await git("rev-parse", "--verify", f"{ref}^{{commit}}", cwd=repo)
        target = await git("rev-parse", "--verify", f"{commit}^{{commit}}", cwd=repo)
        rc, _, _ = await _run_git("merge-base", "--is-ancestor", target, old, cwd=repo)
        if rc == 0:
            return MergeResult(True, old, [], f"{target[:12]} is already in {main_branch}")

        scratch = self.root / ".merge" / f"{Path(repo).name}-{uuid.uuid4().hex[:12]}"
        scratch.parent.mkdir(parents=True, exist_ok=True)
        try:
            async with self._admin(repo):
                await git("worktree", "add", "--detach", str(scratch), old, cwd=repo)
            ident = _identity(MERGER)
            rc, out, err = await _run_git(
                "merge", "--no-ff", "--no-edit", "-m", message, target, cwd=scratch, env=ident
            )
            if rc != 0:
                conflicts = await git("diff", "--name-only", "--diff-filter=U", "-z", cwd=scratch, check=False)
                files = [f for f in conflicts.split("\0") if f]
                await git("merge", "--abort", cwd=scratch, check=False)
                detail = (err or out).strip()
                if files:
                    detail = f"merge conflict in {', '.join(files)}"
                return MergeResult(False, None, files, detail)
            new = await self.head(scratch)
            return await self._advance(repo, main_branch, new, old)
        finally:
            await self.discard(repo, scratch)

    async def prepare_merge(self, repo: Path, main_branch: str, commit: str, message: str) -> PreparedMerge:
        """Build the exact commit that would land (commit merged onto main's current head) in a scratch
        worktree, without moving main. The caller tests it there, then `advance`s and `discard`s."""
        ref = f"refs/heads/{main_branch}"
        base = await git("rev-parse", "--verify", f"{ref}^{{commit}}", cwd=repo)
        target = await git("rev-parse", "--verify", f"{commit}^{{commit}}", cwd=repo)
        rc, _, _ = await _run_git("merge-base", "--is-ancestor", target, base, cwd=repo)
        if rc == 0:
            return PreparedMerge(base, None, None, [], f"{target[:12]} is already in {main_branch}", already=True)
        scratch = self.root / ".merge" / f"{Path(repo).name}-{uuid.uuid4().hex[:12]}"
        scratch.parent.mkdir(parents=True, exist_ok=True)
        async with self._admin(repo):
            await git("worktree", "add", "--detach", str(scratch), base, cwd=repo)
        ident = _identity(MERGER)
        rc, out, err = await _run_git("merge", "--no-ff", "--no-edit", "-m", message, target, cwd=scratch, env=ident)
        if rc != 0:
            conflicts = await git("diff", "--name-only", "--diff-filter=U", "-z", cwd=scratch, check=False)
            files = [f for f in conflicts.split("\0") if f]
            await git("merge", "--abort", cwd=scratch, check=False)
            await self.discard(repo, scratch)
            detail = f"merge conflict in {', '.join(files)}" if files else (err or out).strip()
            return PreparedMerge(base, None, None, files, detail)
        return PreparedMerge(base, await self.head(scratch), scratch, [], f"merged onto {base[:12]}")

    async def advance(self, repo: Path, main_branch: str, new: str, old: str) -> MergeResult:
        """Move main from `old` to exactly `new`, or refuse if main moved meanwhile."""
        return await self._advance(repo, main_branch, new, old)

    async def discard(self, repo: Path, scratch: Path | None) -> None:
        if scratch is not None:
            await remove_checkout(repo, scratch)

    async def merged_since(self, repo: Path, main_branch: str, commit: str) -> list[str]:
        """Subjects of main's first-parent commits since `commit` forked from it (what landed meanwhile)."""
        base = await git("merge-base", commit, f"refs/heads/{main_branch}", cwd=repo, check=False)
        if not base:
            return []
        out = await git("log", "--first-parent", "--format=%s", f"{base}..refs/heads/{main_branch}", cwd=repo,
                        check=False)
        return [line for line in out.splitlines() if line]

    async def _advance(self, repo: Path, main_branch: str, new: str, old: str) -> MergeResult:
        """Move main from `old` to `new`: CAS on the ref, or fast-forward where main is checked out."""
        ref = f"refs/heads/{main_branch}"
        checked_out = [
            wt for wt in await _worktrees(repo) if wt.get("branch") == ref and "bare" not in wt
        ]
        if checked_out:
            # Moving the ref under a checkout would make the user's tree look like it reverts
            # the merge; a fast-forward updates the files too, and refuses if their local
            # changes are in the way or main moved to something `new` does not contain.
            wt = Path(checked_out[0]["worktree"])
            # never over the user's ignored files (a local settings file, a venv's activate script, a data
            # directory): git replaced them silently, and sourcing the venv then ran a builder's code (C-09)
            rc, out, err = await _run_git("merge", "--ff-only", "--no-edit", "--no-overwrite-ignore", new, cwd=wt)
            if rc != 0:
                now = await git("rev-parse", "--verify", "--quiet", ref, cwd=repo, check=False)
                return MergeResult(
                    False, None, [],
                    f"could not fast-forward {main_branch} checked out in {wt}: {(err or out).strip()}",
                    in_the_way=now == old,
                )  # fmt: skip
            return MergeResult(True, new, [], f"fast-forwarded {main_branch} in {wt} to {new[:12]}")
        rc, out, err = await _run_git(
            "update-ref", "-m", f"cockpit: merge {new[:12]}", ref, new, old, cwd=repo
        )
        if rc != 0:
            return MergeResult(
                False, None, [],
                f"{main_branch} moved since {old[:12]}; not updated: {(err or out).strip()}",
            )  # fmt: skip
        return MergeResult(True, new, [], f"{main_branch} moved from {old[:12]} to {new[:12]}")

    async def remove(self, product: str, task_id: str, repo: Path) -> None:
        """Drop the task's worktree. The branch stays: events name its commits, so they must stay reachable."""
        path = self.path_for(product, task_id)
        async with self._admin(repo):
            await git("worktree", "prune", cwd=repo, check=False)
            for wt in await _worktrees(repo):
                if _same_path(wt["worktree"], path):
                    await git("worktree", "remove", "--force", str(path), cwd=repo, check=False)
                    break
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)
            await git("worktree", "prune", cwd=repo, check=False)


_BYTECODE = (".pyc", ".pyo")
_EXTENSIONS = (".so", ".pyd", ".dylib")


def compiled_code(path: str) -> str | None:
    """What kind of compiled code a committed `path` is, if Python would run it on import, else None: bytecode
    (an unchecked-hash .pyc is never compared with its source) or an extension module (imported before a .py
    of the same name)."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(_BYTECODE) or "__pycache__" in path.split("/"):
        return "Python bytecode"
    if name.endswith(_EXTENSIONS) or ".so." in name:
        return "a compiled extension module"
    return None
