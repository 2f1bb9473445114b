"""Agent tools stay inside the task's worktree (invariant 6): real files, real bwrap, no mocks."""

from __future__ import annotations

import asyncio
import errno
import os
import uuid
from pathlib import Path

import pytest

from cockpit.agents.tools import ToolError, ToolSpec, WorktreeTools, open_nofollow
from cockpit.host.sandbox import Sandbox


@pytest.fixture
def wt(tmp_path: Path) -> Path:
    """A worktree with a .git, plus a sibling worktree and an outside dir holding secrets."""
    root = tmp_path / "wt"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n")
    (root / "README.md").write_text("# shop\nadd things\n")
    (root / ".git" / "hooks").mkdir(parents=True)
    (root / ".git" / "config").write_text("[core]\n\tadd = secret\n")
    (tmp_path / "wt2").mkdir()
    (tmp_path / "wt2" / "secret.txt").write_text("other task\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("outside\n")
    return root


@pytest.fixture
def tools(wt: Path) -> WorktreeTools:
    return WorktreeTools(wt, Sandbox("bwrap"), command_timeout_s=10)


async def refused(tools: WorktreeTools, name: str, tool_input: dict) -> str:
    with pytest.raises(ToolError) as info:
        await tools.call(name, tool_input)
    return str(info.value)


# ------------------------------------------------------------------ happy paths


async def test_an_agent_command_runs_niced_in_its_own_session(wt):
    """`nice` reaches every process of the command and, where the kernel groups sessions for the scheduler
    (autogroup: there a process's nice counts only inside its session), the session itself; four commands at
    once each get it (the kernel takes one change per 100 ms). Liveness: nice 0 leaves both at 0."""
    probe = "awk '{print $19}' /proc/self/stat; cat /proc/self/autogroup 2>/dev/null || echo none"
    for nice in (0, 10):
        tools = WorktreeTools(wt, Sandbox("bwrap"), command_timeout_s=10, nice=nice)
        outs = await asyncio.gather(*[tools.call("run_command", {"command": probe}) for _ in range(4)])
        for out in outs:
            code, niceness, group = out.splitlines()
            assert (code, niceness) == ("exit code 0", str(nice)), out
            assert group == "none" or group.endswith(f" nice {nice}"), out


async def test_read_file_numbers_lines_like_cat_n(tools):
    out = await tools.call("read_file", {"path": "src/app.py"})
    assert out == "     1\tdef add(a, b):\n     2\t    return a + b\n     3\t\n     4\tprint(add(1, 2))"


async def test_read_file_offset_and_limit_say_how_to_read_on(tools):
    out = await tools.call("read_file", {"path": "src/app.py", "offset_line": 2, "limit_lines": 2})
    assert out == "     2\t    return a + b\n     3\t\n(more lines follow; continue with offset_line=4)"
    past = await tools.call("read_file", {"path": "src/app.py", "offset_line": 9})
    assert past == "(offset_line 9 is past the end: the file has 4 lines)"


async def test_read_file_caps_output_with_a_note(wt):
    """A huge file must not flood the model's context."""
    (wt / "big.txt").write_text("".join(f"line {i}\n" for i in range(1000)))
    tools = WorktreeTools(wt, Sandbox("bwrap"), max_read_bytes=100)
    out = await tools.call("read_file", {"path": "big.txt"})
    assert out.splitlines()[-1] == "(output capped at 100 bytes; showing lines 1-7; continue with offset_line=8)"
    assert len(out.rsplit("\n", 1)[0].encode()) <= 100


async def test_read_file_refuses_binary_and_directories(tools, wt):
    (wt / "blob.bin").write_bytes(b"\x00\x01\x02")
    assert await refused(tools, "read_file", {"path": "blob.bin"}) == (
        "path 'blob.bin' is a binary file (3 bytes); read_file shows text only"
    )
    assert await refused(tools, "read_file", {"path": "src"}) == "path 'src' is a directory; use list_files"
    assert await refused(tools, "read_file", {"path": "nope.py"}) == "path 'nope.py' does not exist"


async def test_fifo_is_refused_not_waited_on(tools, wt):
    """A FIFO an agent made with run_command would hang an open() forever in a worker thread."""
    os.mkfifo(wt / "pipe")
    assert await refused(tools, "read_file", {"path": "pipe"}) == "path 'pipe' is not a regular file"
    assert await refused(tools, "write_file", {"path": "pipe", "content": "x"}) == "path 'pipe' is not a regular file"


async def test_write_file_creates_parents(tools, wt):
    out = await tools.call("write_file", {"path": "pkg/sub/new.py", "content": "héllo\n"})
    assert out == "wrote 7 bytes to pkg/sub/new.py"
    assert (wt / "pkg/sub/new.py").read_text() == "héllo\n"
    out = await tools.call("write_file", {"path": "./pkg/sub/new.py", "content": "x"})
    assert out == "wrote 1 bytes to pkg/sub/new.py"
    assert (wt / "pkg/sub/new.py").read_text() == "x"


async def test_edit_file_replaces_exactly_once(tools, wt):
    out = await tools.call("edit_file", {"path": "src/app.py", "old": "a + b", "new": "a + b + 0"})
    assert out == "replaced 1 occurrence in src/app.py"
    assert "return a + b + 0\n" in (wt / "src/app.py").read_text()


async def test_edit_file_not_found_and_ambiguous(tools, wt):
    assert await refused(tools, "edit_file", {"path": "src/app.py", "old": "mul", "new": "x"}) == (
        "'old' was not found in src/app.py; read_file it and copy the text exactly"
    )
    assert await refused(tools, "edit_file", {"path": "src/app.py", "old": "add", "new": "plus"}) == (
        "'old' occurs 2 times in src/app.py; include more context to make it unique, or pass replace_all=true"
    )
    before = (wt / "src/app.py").read_text()
    assert "plus" not in before
    out = await tools.call("edit_file", {"path": "src/app.py", "old": "add", "new": "plus", "replace_all": True})
    assert out == "replaced 2 occurrences in src/app.py"
    assert (wt / "src/app.py").read_text() == before.replace("add", "plus")


async def test_list_files_recursive_sorted_without_git(tools, wt):
    (wt / "src" / "b.txt").write_text("b")
    assert await tools.call("list_files", {}) == "README.md\nsrc/app.py\nsrc/b.txt"
    assert await tools.call("list_files", {"path": "src", "pattern": "*.py"}) == "src/app.py"
    assert await tools.call("list_files", {"pattern": "src/*"}) == "src/app.py\nsrc/b.txt"
    assert await tools.call("list_files", {"pattern": "*.rs"}) == "(no files match)"
    assert await tools.call("list_files", {"path": "src/app.py"}) == "src/app.py"
    assert await refused(tools, "list_files", {"path": "nope"}) == "path 'nope' does not exist"


async def test_list_files_caps_the_count(tools, wt):
    for i in range(5):
        (wt / f"f{i}.txt").write_text("")
    tools.LIST_CAP = 3
    out = await tools.call("list_files", {"pattern": "f*"})
    assert out == "f0.txt\nf1.txt\nf2.txt\n(2 more files not shown; narrow with path or pattern)"


async def test_search_text_literal_and_regex_skip_git_and_binary(tools, wt):
    (wt / "blob.bin").write_bytes(b"add\x00add")
    out = await tools.call("search_text", {"pattern": "add("})
    assert out == "src/app.py:1: def add(a, b):\nsrc/app.py:4: print(add(1, 2))"
    out = await tools.call("search_text", {"pattern": r"^add\b", "regex": True})
    assert out == "README.md:2: add things"
    assert await tools.call("search_text", {"pattern": "zzz", "path": "src"}) == "no matches"
    assert await refused(tools, "search_text", {"pattern": "(", "regex": True}) == (
        "search_text: regex '(' is not accepted: missing ): (. The search uses RE2 (linear time): no backreferences "
        "(\\1) or lookaround ((?=, (?<=); search for a simpler pattern"
    )


async def test_search_text_caps_matches(tools, wt):
    (wt / "many.txt").write_text("hit\n" * 10)
    tools.SEARCH_CAP = 2
    out = await tools.call("search_text", {"pattern": "hit", "path": "many.txt"})
    assert out == "many.txt:1: hit\nmany.txt:2: hit\n(stopped after 2 matches; narrow the pattern or path)"


# ------------------------------------------------------------------- path safety


async def test_dotdot_traversal_refused(tools, wt):
    assert await refused(tools, "read_file", {"path": "../outside/secret.txt"}) == (
        "path '../outside/secret.txt' leaves the worktree"
    )
    assert await refused(tools, "write_file", {"path": "../x", "content": "x"}) == "path '../x' leaves the worktree"
    # Climbing out and back in is still climbing out.
    assert await refused(tools, "read_file", {"path": "../wt/README.md"}) == "path '../wt/README.md' leaves the worktree"
    assert await refused(tools, "list_files", {"path": "src/../.."}) == "path 'src/../..' leaves the worktree"
    assert not (wt.parent / "x").exists()


async def test_absolute_path_refused(tools):
    assert await refused(tools, "read_file", {"path": "/etc/passwd"}) == (
        "path '/etc/passwd' is absolute; use a path relative to the worktree"
    )
    assert await refused(tools, "search_text", {"pattern": "root", "path": "/etc"}) == (
        "path '/etc' is absolute; use a path relative to the worktree"
    )


async def test_symlink_to_etc_passwd_refused(tools, wt):
    (wt / "passwd").symlink_to("/etc/passwd")
    assert await refused(tools, "read_file", {"path": "passwd"}) == (
        "path 'passwd' leaves the worktree through the symlink 'passwd'"
    )
    assert await refused(tools, "edit_file", {"path": "passwd", "old": "root", "new": "x"}) == (
        "path 'passwd' is a symlink; agents may not write through symlinks"
    )


async def test_symlink_to_outside_dir_refused(tools, wt):
    (wt / "out").symlink_to(wt.parent / "outside")
    assert await refused(tools, "read_file", {"path": "out/secret.txt"}) == (
        "path 'out/secret.txt' leaves the worktree through the symlink 'out'"
    )
    assert await refused(tools, "list_files", {"path": "out"}) == "path 'out' leaves the worktree through the symlink 'out'"
    assert await refused(tools, "search_text", {"pattern": "outside", "path": "out"}) == (
        "path 'out' leaves the worktree through the symlink 'out'"
    )
    assert await refused(tools, "write_file", {"path": "out/new.txt", "content": "x"}) == (
        "path 'out/new.txt' goes through the symlink 'out'; agents may not write through symlinks"
    )
    # Out through the symlink and back in with '..' is refused too.
    assert await refused(tools, "read_file", {"path": "out/../wt/README.md"}) == (
        "path 'out/../wt/README.md' leaves the worktree through the symlink 'out'"
    )
    assert not (wt.parent / "outside" / "new.txt").exists()
    # A whole-tree search lists the link but never follows it.
    assert await tools.call("search_text", {"pattern": "outside"}) == "no matches"


async def test_symlink_into_sibling_worktree_refused(tools, wt):
    (wt / "src" / "peer").symlink_to("../../wt2")
    assert await refused(tools, "read_file", {"path": "src/peer/secret.txt"}) == (
        "path 'src/peer/secret.txt' leaves the worktree through the symlink 'src/peer'"
    )


async def test_dangling_symlink_out_and_loop_refused(tools, wt):
    (wt / "ghost").symlink_to(wt.parent / "outside" / "not-yet.txt")
    assert await refused(tools, "read_file", {"path": "ghost"}) == (
        "path 'ghost' leaves the worktree through the symlink 'ghost'"
    )
    (wt / "loop").symlink_to("loop")
    assert await refused(tools, "read_file", {"path": "loop"}) == "path 'loop' is a symlink loop"


async def test_git_hooks_write_refused(tools, wt):
    """A hook written by an agent would run unsandboxed at the next commit."""
    assert await refused(tools, "write_file", {"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\n"}) == (
        "path '.git/hooks/pre-commit': '.git' is not writable by agents"
    )
    assert not (wt / ".git/hooks/pre-commit").exists()
    assert await refused(tools, "edit_file", {"path": "sub/.git/config", "old": "a", "new": "b"}) == (
        "path 'sub/.git/config': '.git' is not writable by agents"
    )


async def test_git_read_refused(tools, wt):
    assert await refused(tools, "read_file", {"path": ".git/config"}) == "path '.git/config': '.git' is not readable by agents"
    assert await refused(tools, "list_files", {"path": ".git"}) == "path '.git': '.git' is not readable by agents"
    # Nor through an in-tree symlink that lands in .git.
    (wt / "g").symlink_to(".git")
    assert await refused(tools, "read_file", {"path": "g/config"}) == "path 'g/config': '.git' is not readable by agents"
    # And a whole-tree search never looks inside.
    assert "secret" not in await tools.call("search_text", {"pattern": "add"})


async def test_write_through_in_tree_symlink_refused(tools, wt):
    """Even a symlink pointing inside is refused for writes: it may be repointed later."""
    (wt / "alias.py").symlink_to("src/app.py")
    (wt / "srcdir").symlink_to("src")
    before = (wt / "src/app.py").read_text()
    assert await refused(tools, "write_file", {"path": "alias.py", "content": "x"}) == (
        "path 'alias.py' is a symlink; agents may not write through symlinks"
    )
    assert await refused(tools, "write_file", {"path": "srcdir/app.py", "content": "x"}) == (
        "path 'srcdir/app.py' goes through the symlink 'srcdir'; agents may not write through symlinks"
    )
    assert (wt / "src/app.py").read_text() == before
    # Reading through it is fine: it stays inside.
    assert (await tools.call("read_file", {"path": "alias.py", "limit_lines": 1})).startswith("     1\tdef add")


def test_open_nofollow_refuses_a_symlink_swapped_in_after_the_check(tools, wt):
    """The check-then-use race: the path is checked, then becomes a symlink to outside."""
    victim = wt.parent / "outside" / "secret.txt"
    parts = tools._check("late.txt", write=True)  # passes: nothing there yet
    (wt / "late.txt").symlink_to(victim)  # swapped in by a concurrent command
    with pytest.raises(OSError) as info:
        open_nofollow(tools.root, parts, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    assert info.value.errno == errno.ELOOP
    with pytest.raises(ToolError, match=r"^path 'late.txt' goes through a symlink; refused to follow it$"):
        tools._open_regular("late.txt", parts, os.O_WRONLY | os.O_CREAT, "write", make_parents=True)
    assert victim.read_text() == "outside\n"


def test_open_nofollow_refuses_a_directory_swapped_for_a_symlink(tools, wt):
    """A parent directory replaced by a symlink after the check must not redirect the write."""
    (wt / "pkg").mkdir()
    parts = tools._check("pkg/new.txt", write=True)
    (wt / "pkg").rmdir()
    (wt / "pkg").symlink_to(wt.parent / "outside")
    with pytest.raises(OSError) as info:
        open_nofollow(tools.root, parts, os.O_WRONLY | os.O_CREAT, make_parents=True)
    assert info.value.errno == errno.ELOOP
    assert not (wt.parent / "outside" / "new.txt").exists()


# ------------------------------------------------------------------ input checks


async def test_input_is_checked_against_the_schema(tools):
    assert await refused(tools, "read_file", {}) == "read_file: missing required input 'path'"
    assert await refused(tools, "read_file", {"path": 3}) == "read_file: input 'path' must be a string, got int"
    assert await refused(tools, "read_file", {"path": "a", "limit_lines": True}) == (
        "read_file: input 'limit_lines' must be an integer, got bool"
    )
    assert await refused(tools, "read_file", {"path": "a", "offset_line": 0}) == (
        "read_file: input 'offset_line' must be at least 1, got 0"
    )
    assert await refused(tools, "write_file", {"path": "a", "content": "x", "mode": "w"}) == (
        "write_file: unknown input 'mode'; the inputs are: path, content"
    )
    assert await refused(tools, "rm_rf", {}) == (
        "unknown tool 'rm_rf'; the tools are: read_file, write_file, edit_file, list_files, search_text, run_command"
    )


def test_specs_are_api_tool_dicts():
    assert set(WorktreeTools.SPECS) == {"read_file", "write_file", "edit_file", "list_files", "search_text", "run_command"}
    assert WorktreeTools.READ_ONLY == {"read_file", "list_files", "search_text"}
    api = WorktreeTools.SPECS["edit_file"].to_api()
    assert set(api) == {"name", "description", "input_schema"}
    assert api["input_schema"]["required"] == ["path", "old", "new"]
    assert [t["name"] for t in WorktreeTools.api_tools(WorktreeTools.READ_ONLY)] == ["read_file", "list_files", "search_text"]
    expected = {"name": "x", "description": "d", "input_schema": {"type": "object"}}
    assert ToolSpec("x", "d", {"type": "object"}).to_api() == expected


# ------------------------------------------------------------------- run_command


async def test_run_command_returns_exit_code_and_output(tools, wt):
    out = await tools.call("run_command", {"command": "cat README.md && echo made > made.txt"})
    assert out == "exit code 0\n# shop\nadd things\n"
    assert (wt / "made.txt").read_text() == "made\n"


async def test_failing_command_is_a_result_not_an_error(tools):
    out = await tools.call("run_command", {"command": "echo boom >&2; exit 3"})
    assert out == "exit code 3\nboom\n"


async def test_run_command_notes_timeout_and_truncation(wt):
    tools = WorktreeTools(wt, Sandbox("bwrap"), command_timeout_s=0.5, output_cap_bytes=100)
    out = await tools.call("run_command", {"command": "head -c 1000 /dev/zero | tr '\\0' a; sleep 5"})
    assert out.startswith("exit code none\naaaa")
    assert out.endswith("\n(timed out after 0.5s)\n(output truncated)")


async def test_command_cannot_write_outside_the_worktree(tools, wt, tmp_path):
    """The sandbox, not path checks, confines commands: we run as root here, so only it stops these."""
    escape = Path("/var/tmp") / f"cockpit-escape-{uuid.uuid4().hex}"
    victim = tmp_path / "outside" / "secret.txt"
    try:
        out = await tools.call(
            "run_command",
            {"command": f"echo x > {escape}; echo x > {victim}; echo x > ../wt2/secret.txt; echo in > inside.txt"},
        )
        assert out.startswith("exit code 0\n")  # the last write, inside, succeeded
        # outside the allow-list a path does not exist; beside the worktree it is read-only
        assert "No such file or directory" in out or "Read-only file system" in out
        assert not escape.exists()
        assert victim.read_text() == "outside\n"
        assert (tmp_path / "wt2" / "secret.txt").read_text() == "other task\n"
        assert (wt / "inside.txt").read_text() == "in\n"
    finally:
        escape.unlink(missing_ok=True)


async def test_scratch_is_writable_only_through_run_command(wt, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    tools = WorktreeTools(wt, Sandbox("bwrap"), scratch=scratch)
    out = await tools.call("run_command", {"command": f"echo s > {scratch}/cache && cat {scratch}/cache"})
    assert out == "exit code 0\ns\n"
    assert (scratch / "cache").read_text() == "s\n"
