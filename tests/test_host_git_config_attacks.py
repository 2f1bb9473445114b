"""An agent makes the cockpit's own git (outside the sandbox) run its program: through the `.git` file, a git
dir of its own, a filter or merge driver, a config include (issue 17, adversary findings A-02, A-03, A-06).

Every attack is staged for real: the agent's moves are its commands in the production bubblewrap sandbox
(what any builder's run_command can do), then the cockpit's tool (commit, submit, sync_main) or its next
checkout runs. The payload writes a marker into a host directory the sandbox cannot see, so the marker
appearing means code ran on the host. Liveness: the same attack with the defences switched off in the test
(the old lenient `.git` parse, no vouched-for GIT_DIR, no driver overrides, includes allowed) writes the
marker; with them on it does not, and the refusal says why.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from gitrepo import commit_files, make_repo, run_git

from cockpit.agents.tools import WorktreeTools
from cockpit.factory import commands
from cockpit.factory.task_tools import TaskToolbox
from cockpit.factory.workspaces import GitError, Workspaces
from cockpit.host import gitfile, safe_git
from cockpit.host.sandbox import Sandbox
from cockpit.store import Store


def _lenient_named_dir(top: str, raw: bytes) -> str:
    """The parse before the fix: anything after 'gitdir:', stripped (git keeps the spaces)."""
    text = raw.decode(errors="replace").strip()
    return os.path.normpath(os.path.join(top, text[len("gitdir:"):].strip()))


def defences_off(m: pytest.MonkeyPatch) -> None:
    """The cockpit's git as it was: reads the `.git` file itself, runs every driver a config names
    (`m` is a monkeypatch context: leaving it switches the defences back on)."""
    from cockpit.factory import task_tools, workspaces

    m.setattr(gitfile, "named_dir", _lenient_named_dir)
    m.setattr(safe_git, "_repository", lambda cwd, env: safe_git._Repository({}, None))
    no_overrides(m)
    m.setattr(task_tools, "check_worktree", lambda wt: None)
    m.setattr(workspaces, "check_worktree", lambda wt: None)


def no_overrides(m: pytest.MonkeyPatch) -> None:
    """Every driver a config names runs again (and no verdict remembered from before applies)."""
    m.setattr(safe_git, "config_overrides", lambda listing: [])
    m.setattr(safe_git, "_overrides_seen", {})


@pytest.fixture
async def env(host_tmp):
    repo = make_repo(host_tmp / "repo")
    hidden = host_tmp / "host-only"  # not shown in the sandbox: only code on the host can write here
    hidden.mkdir()
    store = await Store.open(host_tmp / "memory" / "cockpit.db")
    tid = (await commands.add_task(store, product="shop", title="attack")).task_id
    ws = Workspaces(host_tmp / "worktrees")
    wt = await ws.ensure("shop", repo, "main", tid)
    box = TaskToolbox(role="builder", agent="builder-1", task_id=tid, product="shop", worktree=wt,
                      worktree_tools=WorktreeTools(wt, Sandbox("bwrap"), command_timeout_s=20), store=store,
                      workspaces=ws, main_branch="main")
    yield {"repo": repo, "ws": ws, "wt": wt, "box": box, "marker": hidden / "MARKER", "tid": tid}
    await store.close()


def payload(marker: Path) -> str:
    return f"sh -c 'id > {marker}; cat'"


async def agent_runs(box: TaskToolbox, script: str) -> None:
    """The agent's move: one command in the production sandbox (where its worktree is writable)."""
    out = await box.call("run_command", {"command": script})
    assert out.text.startswith("exit code 0"), out.text


def own_repo_script(marker: Path, *, driver: str) -> str:
    """The agent swaps its worktree's `.git` link for a repository of its own whose config names a program."""
    config = {"clean": f"git config filter.x.clean \"{payload(marker)}\"",
              "process": f"git config filter.x.process \"sh -c 'id > {marker}; exit 1'\""}[driver]
    return ("rm -f .git && git init -q . && " + config + " && printf '*.py filter=x\\n' > .gitattributes && "
            "git -c filter.x.clean=cat -c filter.x.process= -c user.name=a -c user.email=a@b add -A && "
            "touch -d '2001-01-01 00:00' calc.py && echo swapped")


# --- submit / sync_main ran git status in a worktree nobody checked ---------------------------


@pytest.mark.parametrize("tool,driver", [("submit", "clean"), ("sync_main", "clean"), ("submit", "process")])
async def test_own_git_dir_then_submit_runs_nothing_on_the_host(env, tool, driver, monkeypatch):
    await agent_runs(env["box"], own_repo_script(env["marker"], driver=driver))
    with monkeypatch.context() as m:
        defences_off(m)
        await env["box"].call(tool, {"note": "done"})
        assert env["marker"].exists(), "liveness: without the defences the agent's filter runs on the host"
    env["marker"].unlink()
    out = await env["box"].call(tool, {"note": "done"})
    assert out.is_error and "refusing to run git in" in out.text and ".git is not the file a linked worktree has" \
        in out.text, out.text
    assert not env["marker"].exists()


async def test_own_git_dir_is_refused_by_safe_git_itself(env):
    """Below every caller: safe_git refuses a `.git` directory under the worktrees root, whoever calls."""
    await agent_runs(env["box"], own_repo_script(env["marker"], driver="clean"))
    rc, _, err = await safe_git.run("status", "--porcelain", cwd=env["wt"])
    assert rc == 128 and b".git is a directory, not the file a linked worktree has" in err, err
    assert not env["marker"].exists()


# --- the `.git` file read unlike git reads it ---------------------------------------------------


def _gitfile_trick(marker: Path, *, text: str, own: str, link: str, link_to: str) -> str:
    """A symlink that makes the lenient parse see the genuine admin dir, and the agent's repository where git
    reads the path verbatim (the spaces kept)."""
    return (f"admin=$(sed 's/^gitdir: //' .git) && ln -s \"{link_to}\" {link} && "
            f"git init -q /tmp/own && git -C /tmp/own config filter.x.clean \"{payload(marker)}\" && "
            f"mkdir -p \"$(dirname \"{own}\")\" && cp -r /tmp/own/.git \"{own}\" && "
            f"printf '%s\\n' \"{text}\" > .git && printf '*.py filter=x\\n' > .gitattributes && "
            f"echo '# faster' >> calc.py && echo planted")


VARIANTS = {
    # `gitdir:  lnk/worktrees/T` (two spaces): git's path is " lnk/worktrees/T", a directory of the agent's
    "two_spaces": lambda tid: dict(text=f"gitdir:  lnk/worktrees/{tid}", own=f" lnk/worktrees/{tid}", link="lnk",
                                   link_to="$(dirname \"$(dirname \"$admin\")\")"),
    # a trailing space: the check strips it and follows `lnk2` to the admin dir, git opens "lnk2 "
    "trailing_space": lambda tid: dict(text="gitdir: lnk2 ", own="lnk2 ", link="lnk2", link_to="$admin"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
async def test_gitfile_parsed_like_git_commit_runs_nothing_on_the_host(env, variant, monkeypatch):
    spec = VARIANTS[variant](env["tid"])
    await agent_runs(env["box"], _gitfile_trick(env["marker"], **spec))
    with monkeypatch.context() as m:
        defences_off(m)
        await env["box"].call("commit", {"message": "faster"})
        assert env["marker"].exists(), f"liveness ({variant}): with the lenient parse git runs the agent's filter"
    env["marker"].unlink()
    out = await env["box"].call("commit", {"message": "faster"})
    assert out.is_error and "refusing to run git in" in out.text and "points inside the worktree" in out.text, out.text
    assert not env["marker"].exists()


async def test_vouched_git_dir_alone_holds_when_the_parse_is_lenient(env, monkeypatch):
    """Two layers: even with the old parse, git is handed the genuine admin dir (GIT_DIR) and never reads
    the agent's `.git` file, so its repository is never opened."""
    from cockpit.factory import workspaces

    await agent_runs(env["box"], _gitfile_trick(env["marker"], **VARIANTS["two_spaces"](env["tid"])))
    monkeypatch.setattr(gitfile, "named_dir", _lenient_named_dir)
    no_overrides(monkeypatch)
    monkeypatch.setattr(workspaces, "check_worktree", lambda wt: None)
    await env["box"].call("commit", {"message": "faster"})
    assert not env["marker"].exists()


# --- drivers named by the repository's config, and config included from a tracked file ----------


def test_product_repo_filter_runs_nothing_on_a_checkout(host_tmp, monkeypatch):
    """(a) a repository handed over with `.git/config` naming smudge and process filters: the cockpit's
    checkout (worktree add, as at product add and for every task) runs neither."""
    marker = host_tmp / "MARKER"
    repo = make_repo(host_tmp / "repo", {"calc.py": "x = 1\n", ".gitattributes": "*.py filter=fmt\n"})
    run_git(repo, "config", "filter.fmt.smudge", payload(marker))
    run_git(repo, "config", "filter.fmt.process", f"sh -c 'id > {marker}; exit 1'")
    run_git(repo, "config", "filter.fmt.required", "true")

    def checkout(name: str) -> tuple[int, bytes]:
        p = safe_git.run_sync("worktree", "add", "--detach", str(host_tmp / name), "main", cwd=repo)
        return p.returncode, p.stderr

    with monkeypatch.context() as m:
        no_overrides(m)
        checkout("live")
        assert marker.exists(), "liveness: without the overrides the repository's filter runs"
    marker.unlink()
    rc, err = checkout("safe")
    assert rc == 0, err
    assert not marker.exists()
    assert (host_tmp / "safe" / "calc.py").read_text() == "x = 1\n"


async def test_merge_driver_named_by_config_runs_nothing(env, monkeypatch):
    """A merge driver in the repository's config, picked by a committed `.gitattributes`: main's merge
    into the task branch (sync_main) conflicts instead of running it."""
    repo, wt, marker = env["repo"], env["wt"], env["marker"]
    run_git(repo, "config", "merge.evil.driver", f"sh -c 'id > {marker}; cp %B %A'")
    commit_files(repo, {".gitattributes": "*.py merge=evil\n"})
    await env["ws"].sync_main(wt, "main", author="builder-1")  # one side changed: no driver needed yet
    commit_files(repo, {"calc.py": "def add(a, b):\n    return b + a\n"})
    (wt / "calc.py").write_text("def add(a, b):\n    return a + b  # task\n")
    await env["box"].call("commit", {"message": "task side"})
    with monkeypatch.context() as m:
        no_overrides(m)
        try:
            await env["ws"].sync_main(wt, "main", author="builder-1")
        except GitError:
            pass
        assert marker.exists(), "liveness: without the overrides the merge driver runs on the host"
        run_git(wt, "reset", "-q", "--hard", "ORIG_HEAD")
    marker.unlink()
    with pytest.raises(GitError, match="conflict in calc.py"):
        await env["ws"].sync_main(wt, "main", author="builder-1")
    assert not marker.exists()


async def test_config_include_of_a_tracked_file_is_refused(env, monkeypatch):
    """(b) the product's config includes a tracked `.gitconfig`; a merged change adds a filter to it and a
    `.gitattributes`: the next task's worktree would run it on the host. Refused, saying how to fix it."""
    repo, ws, marker = env["repo"], env["ws"], env["marker"]
    run_git(repo, "config", "--local", "include.path", "../.gitconfig")
    commit_files(repo, {".gitconfig": f"[filter \"fmt\"]\n\tsmudge = \"{payload(marker)}\"\n",
                        ".gitattributes": "*.py filter=fmt\n"}, "Tidy the git settings")
    with monkeypatch.context() as m:
        no_overrides(m)
        await ws.ensure("shop", repo, "main", "T8")
        assert marker.exists(), "liveness: the included file's filter runs at the next checkout"
    marker.unlink()
    with pytest.raises(GitError) as refused:
        await ws.ensure("shop", repo, "main", "T9")
    assert "includes another config file (../.gitconfig)" in str(refused.value)
    assert "--unset-all include.path" in str(refused.value)
    assert not marker.exists()


def test_include_if_is_refused_too(host_tmp):
    repo = make_repo(host_tmp / "repo")
    run_git(repo, "config", "--local", "includeIf.gitdir:/.path", "../.gitconfig")
    p = safe_git.run_sync("status", cwd=repo)
    assert p.returncode == 128 and b"includes another config file" in p.stderr, p.stderr


def test_config_overrides_disarm_every_driver_and_keep_odd_names():
    listing = (b"file:.git/config\0filter.a.b=c.clean\ncat\0file:.git/config\0merge.m.driver\nx %A\0"
               b"file:.git/config\0diff.d.textconv\nx\0file:.git/config\0core.bare\nfalse\0"
               b"file:.git/config\0hook.h.command\nx\0")
    got = dict(safe_git.config_overrides(listing))
    assert got == {"filter.a.b=c.clean": "", "filter.a.b=c.smudge": "", "filter.a.b=c.process": "",
                   "filter.a.b=c.required": "false", "merge.m.driver": "false", "diff.d.textconv": "false",
                   "hook.h.command": "true"}


GITFILES = [b"gitdir:  {d}\n", b"gitdir: {d} \n", b"gitdir: {d}\r\n", b"gitdir: {d}\n\n", b"gitdir:{d}\n",
            b"gitdir:\t{d}\n", b"GITDIR: {d}\n", b"gitdir: {rel}\n", b"gitdir:  {rel}\n", b"gitdir: {d}"]


@pytest.mark.parametrize("content", GITFILES, ids=[c.decode().replace("\n", "LF") for c in GITFILES])
def test_named_dir_is_what_git_itself_opens(host_tmp, content):
    """The parse and git agree on every spelling: the directory git resolves (when it accepts the file) is the
    one named_dir returns, and a file git rejects is rejected."""
    top = host_tmp / "wt"
    top.mkdir()
    real = make_repo(host_tmp / "r")
    spelled = content.replace(b"{d}", bytes(real / ".git")).replace(b"{rel}", b"../r/.git")
    (top / ".git").write_bytes(spelled)
    git = subprocess.run(["git", "rev-parse", "--absolute-git-dir"], cwd=top, capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "HOME": str(host_tmp), "GIT_CONFIG_NOSYSTEM": "1"})
    try:
        ours = gitfile.named_dir(str(top), spelled)
    except gitfile.UnsafeGitFile:
        assert git.returncode != 0, f"git accepts {spelled!r} as {git.stdout}"
        return
    prefix = "fatal: not a git repository: "
    opened = git.stdout.strip() if git.returncode == 0 else git.stderr.removeprefix(prefix).rstrip("\n")
    assert git.returncode == 0 or git.stderr.startswith(prefix), git.stderr
    assert os.path.normpath(ours) == os.path.normpath(opened)


def test_a_remembered_verdict_follows_the_config(host_tmp):
    """The overrides are read once per config state: an include or a driver added later is seen at the next
    command (the config file's identity changed), never served from the memory of the old file."""
    marker = host_tmp / "MARKER"
    repo = make_repo(host_tmp / "repo", {"calc.py": "x = 1\n", ".gitattributes": "*.py filter=fmt\n"})
    assert safe_git.run_sync("status", cwd=repo).returncode == 0  # remembered: no driver, no include
    run_git(repo, "config", "filter.fmt.clean", payload(marker))
    (repo / "calc.py").write_text("x = 2\n")
    assert safe_git.run_sync("add", "-A", cwd=repo).returncode == 0
    assert not marker.exists()
    run_git(repo, "config", "include.path", "../.gitconfig")
    p = safe_git.run_sync("status", cwd=repo)
    assert p.returncode == 128 and b"includes another config file" in p.stderr


def test_a_users_submodule_checkout_still_works_as_a_product(host_tmp):
    """Outside the cockpit's worktree roots a `.git` file is the user's own (a submodule checkout names
    `.git/modules/<name>`, not `worktrees/`): git reads it as always, with the config checks."""
    sub = make_repo(host_tmp / "sub")
    top = make_repo(host_tmp / "top")
    run_git(top, "-c", "protocol.file.allow=always", "submodule", "-q", "add", str(sub), "lib")
    p = safe_git.run_sync("rev-parse", "--git-dir", cwd=top / "lib")
    assert p.returncode == 0 and b"modules/lib" in p.stdout, p.stderr
