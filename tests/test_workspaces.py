"""Worktrees, commits and merges on real git repos: restart-safe, and main never loses a change."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from gitrepo import commit_files, make_repo, run_git

from cockpit.factory.workspaces import GitError, MergeResult, Workspaces, git


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo", {"a.txt": "a\n", "shared.txt": "one\n"})


@pytest.fixture
def ws(tmp_path):
    return Workspaces(tmp_path / "worktrees")


def main_head(repo: Path, branch: str = "main") -> str:
    return run_git(repo, "rev-parse", f"refs/heads/{branch}")


async def task_commit(ws: Workspaces, repo: Path, task: str, files: dict[str, str], main: str = "main") -> str:
    wt = await ws.ensure("shop", repo, main, task)
    for rel, text in files.items():
        (wt / rel).write_text(text)
    sha = await ws.commit(wt, f"work on {task}", f"builder-{task}")
    assert sha is not None
    return sha


async def test_git_error_names_command_and_stderr(repo):
    with pytest.raises(GitError, match=r"git rev-parse --verify nope.*fatal"):
        await git("rev-parse", "--verify", "nope", cwd=repo)
    assert await git("rev-parse", "--verify", "nope", cwd=repo, check=False) == ""


async def test_ensure_is_idempotent_and_restart_safe(repo, ws):
    path = await ws.ensure("shop", repo, "main", "T1")
    assert path == ws.path_for("shop", "T1") and (path / "a.txt").exists()
    assert await ws.ensure("shop", repo, "main", "T1") == path
    assert run_git(path, "branch", "--show-current") == "cockpit/T1"
    (path / "work.txt").write_text("in progress")
    assert await ws.ensure("shop", repo, "main", "T1") == path
    assert (path / "work.txt").exists()  # never recreated over work in progress
    # The directory vanished (crash, cleanup): the stale record is pruned and it comes back.
    shutil.rmtree(path)
    assert await ws.ensure("shop", repo, "main", "T1") == path
    assert (path / "a.txt").exists()
    listed = run_git(repo, "worktree", "list", "--porcelain")
    assert listed.count(f"worktree {path}") == 1


async def test_commit_records_author_and_trailer(repo, ws):
    wt = await ws.ensure("shop", repo, "main", "T1")
    assert await ws.commit(wt, "nothing yet", "builder-1") is None
    (wt / "new.txt").write_text("hello\n")
    (wt / "a.txt").unlink()
    sha = await ws.commit(wt, "Add new.txt", "builder-1")
    assert sha == await ws.head(wt) == run_git(repo, "rev-parse", "refs/heads/cockpit/T1")
    info = run_git(repo, "log", "-1", "--format=%an|%ae|%cn|%ce", sha)
    assert info == "builder-1|builder-1@cockpit.local|builder-1|builder-1@cockpit.local"
    body = run_git(repo, "log", "-1", "--format=%B", sha)
    assert body.startswith("Add new.txt")
    assert run_git(repo, "log", "-1", "--format=%(trailers:key=Cockpit-Agent,valueonly)", sha) == "builder-1"
    assert await ws.commit(wt, "again", "builder-1") is None
    base = main_head(repo)
    assert await ws.changed_files(repo, base, sha) == ["a.txt", "new.txt"]
    assert "+hello" in await ws.diff(repo, base, sha)


async def test_commit_never_runs_hooks(repo, ws):
    wt = await ws.ensure("shop", repo, "main", "T1")
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {repo.parent}/hook-ran\nexit 1\n")
    hook.chmod(0o755)
    (wt / "x.txt").write_text("x")
    assert await ws.commit(wt, "x", "builder-1") is not None
    assert not (repo.parent / "hook-ran").exists()


async def test_merge_moves_main_and_keeps_both_changes(repo, ws):
    run_git(repo, "checkout", "-q", "--detach")  # main not checked out: the CAS path
    sha = await task_commit(ws, repo, "T1", {"b.txt": "b\n"})
    other = run_git(repo, "commit-tree", "-p", main_head(repo), "-m", "meanwhile", _tree_with(repo, "c.txt", "c\n"))
    run_git(repo, "update-ref", "refs/heads/main", other)

    result = await ws.merge(repo, "main", sha, "Merge T1")
    assert result.ok and result.merged_commit == main_head(repo), result
    assert run_git(repo, "rev-list", "--parents", "-n1", "main").split()[1:] == [other, sha]
    assert run_git(repo, "show", "main:b.txt") == "b" and run_git(repo, "show", "main:c.txt") == "c"
    assert run_git(repo, "log", "-1", "--format=%s", "main") == "Merge T1"
    assert not any((ws.root / ".merge").iterdir())
    assert ".merge" not in run_git(repo, "worktree", "list")


def _tree_with(repo: Path, name: str, text: str) -> str:
    """Main's tree plus one file, built without touching any checkout."""
    blob = run_git(repo, "hash-object", "-w", "--stdin", input=text)
    listing = run_git(repo, "ls-tree", "main") + f"\n100644 blob {blob}\t{name}\n"
    return run_git(repo, "mktree", input=listing)


async def test_conflict_reports_files_and_leaves_main(repo, ws):
    sha = await task_commit(ws, repo, "T1", {"shared.txt": "task\n"})
    before = commit_files(repo, {"shared.txt": "main\n"}, "main edits shared")
    result = await ws.merge(repo, "main", sha, "Merge T1")
    assert result == MergeResult(False, None, ["shared.txt"], result.detail)
    assert "shared.txt" in result.detail
    assert main_head(repo) == before
    assert run_git(repo, "status", "--porcelain") == ""
    assert not any((ws.root / ".merge").iterdir())


class _MainMovesUnderneath(Workspaces):
    """Another merge lands between building ours and moving main: the CAS must refuse."""

    async def _advance(self, repo, main_branch, new, old):
        self.concurrent = run_git(repo, "commit-tree", "-p", old, "-m", "concurrent", _tree_with(repo, "z.txt", "z\n"))
        run_git(repo, "update-ref", f"refs/heads/{main_branch}", self.concurrent)
        return await super()._advance(repo, main_branch, new, old)


async def test_cas_refuses_when_main_moved(repo, tmp_path):
    run_git(repo, "checkout", "-q", "--detach")
    ws = _MainMovesUnderneath(tmp_path / "worktrees")
    sha = await task_commit(ws, repo, "T1", {"b.txt": "b\n"})
    result = await ws.merge(repo, "main", sha, "Merge T1")
    assert not result.ok and result.merged_commit is None and "moved" in result.detail
    assert main_head(repo) == ws.concurrent  # the concurrent change is not lost
    # Retried against the new main, it lands with both.
    result = await Workspaces(tmp_path / "worktrees").merge(repo, "main", sha, "Merge T1")
    assert result.ok and run_git(repo, "show", "main:z.txt") == "z"


async def test_checked_out_main_is_fast_forwarded(repo, ws):
    sha = await task_commit(ws, repo, "T1", {"b.txt": "b\n"})
    result = await ws.merge(repo, "main", sha, "Merge T1")
    assert result.ok and result.merged_commit == main_head(repo)
    assert (repo / "b.txt").read_text() == "b\n"  # the user's checkout moved with main
    assert run_git(repo, "status", "--porcelain") == ""


async def test_local_changes_in_the_way_refuse_safely(repo, ws):
    sha = await task_commit(ws, repo, "T1", {"shared.txt": "task\n"})
    before = main_head(repo)
    (repo / "shared.txt").write_text("user's unsaved edit\n")
    result = await ws.merge(repo, "main", sha, "Merge T1")
    assert not result.ok and "fast-forward" in result.detail, result
    assert main_head(repo) == before
    assert (repo / "shared.txt").read_text() == "user's unsaved edit\n"


async def test_already_merged_is_idempotent(repo, ws):
    sha = await task_commit(ws, repo, "T1", {"b.txt": "b\n"})
    first = await ws.merge(repo, "main", sha, "Merge T1")
    again = await ws.merge(repo, "main", sha, "Merge T1")
    assert again.ok and again.merged_commit == first.merged_commit == main_head(repo)
    assert "already" in again.detail


async def test_any_main_branch_name_and_remove(tmp_path, ws):
    repo = make_repo(tmp_path / "trunkrepo", {"a.txt": "a\n"}, branch="trunk")
    sha = await task_commit(ws, repo, "T9", {"b.txt": "b\n"}, main="trunk")
    result = await ws.merge(repo, "trunk", sha, "Merge T9")
    assert result.ok and run_git(repo, "show", "trunk:b.txt") == "b"
    await ws.remove("shop", "T9", repo)
    assert not ws.path_for("shop", "T9").exists()
    assert "T9" not in run_git(repo, "worktree", "list")
    assert run_git(repo, "rev-parse", "refs/heads/cockpit/T9") == sha  # its commits stay reachable
    await ws.remove("shop", "T9", repo)  # idempotent


async def test_tampered_dot_git_is_refused(repo, ws, tmp_path):
    """Agent code rewrites its worktree's .git to a git dir it controls, whose config names a
    filter command: the cockpit's git, which runs unsandboxed, must not follow it."""
    wt = await ws.ensure("shop", repo, "main", "T1")
    marker = tmp_path / "filter-ran"
    evil = wt / "evil"
    run_git(tmp_path, "init", "-q", str(evil))
    with open(evil / ".git" / "config", "a") as f:
        f.write(f'[filter "x"]\n\tclean = touch {marker}; cat\n')
    (wt / ".gitattributes").write_text("* filter=x\n")
    (wt / ".git").write_text(f"gitdir: {evil / '.git'}\n")
    with pytest.raises(GitError, match="refusing to run git"):
        await ws.commit(wt, "innocent", "builder-1")
    with pytest.raises(GitError, match="refusing"):
        await ws.head(wt)
    # Pointing at another task's (genuine) git dir is refused too: commits would land there.
    other = await ws.ensure("shop", repo, "main", "T2")
    (wt / ".git").write_text((other / ".git").read_text())
    with pytest.raises(GitError, match="another worktree"):
        await ws.commit(wt, "innocent", "builder-1")
    assert not marker.exists()


async def test_many_tasks_of_one_product_start_merge_and_finish_at_once(repo, ws, tmp_path):
    """Worktree admin on one repository is serialised: adds, throwaway checkouts and removes all at once
    (as a busy product's tasks, breakers and merge queue do) leave every worktree whole."""
    import asyncio

    from cockpit.factory.scratch import throwaway_tree

    head = main_head(repo)

    async def probe(n: int) -> bool:
        async with throwaway_tree(repo, tmp_path / "scratch", head, label=f"probe{n}") as tree:
            return (tree / "a.txt").read_text() == "a\n"

    tasks = [f"T{i}" for i in range(12)]
    paths = await asyncio.gather(*(ws.ensure("shop", repo, "main", t) for t in tasks),
                                 *(probe(n) for n in range(6)))
    assert all(p is True for p in paths[12:])
    for t, path in zip(tasks, paths[:12], strict=True):
        assert (path / "a.txt").read_text() == "a\n"
        assert run_git(path, "rev-parse", "--abbrev-ref", "HEAD") == f"cockpit/{t}"
    # half of them finish while the other half commit and a new batch starts
    await asyncio.gather(*(ws.remove("shop", t, repo) for t in tasks[:6]),
                         *(ws.ensure("shop", repo, "main", f"U{i}") for i in range(6)),
                         *(probe(n) for n in range(6, 10)))
    listed = {line.split(" ", 1)[1] for line in run_git(repo, "worktree", "list", "--porcelain").splitlines()
              if line.startswith("worktree ")}
    assert listed == {str(repo)} | {str(ws.path_for("shop", t)) for t in tasks[6:] + [f"U{i}" for i in range(6)]}
    assert not any(ws.path_for("shop", t).exists() for t in tasks[:6])
