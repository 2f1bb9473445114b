"""The toolbox an agent gets for one task: worktree tools plus the tools that act on the task.

The role decides which tools exist (cockpit.agents.roles.ROLE_TOOLS). The task
tools (commit, submit, approve, request_changes) append events through the
store, so the domain has the last word: a refusal comes back to the model as an
error and is recorded for the human to see.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..agents.loop import ToolOutcome
from ..agents.roles import ROLE_TOOLS
from ..agents.tools import ToolError, WorktreeTools
from ..domain.errors import Refused
from ..domain.events import Event, Kind
from ..store import Store
from ..store.memory import Memory
from .defects import ReproResult, attributable, fixable_paths, guess_kind, needs_witness, witnessed
from .knowledge import REMEMBER_SPEC, remember_from_tool
from .workspaces import GitError, MergeConflicted, UnsafeChange, Workspaces, check_worktree, git


def _spec(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"name": name, "description": description,
            "input_schema": {"type": "object", "properties": properties, "required": required}}


TASK_TOOL_SPECS: dict[str, dict[str, Any]] = {
    "commit": _spec("commit", "Commit every change in your worktree with this message. Returns the commit sha.",
                    {"message": {"type": "string", "description": "what changed and why"}}, ["message"]),
    "submit": _spec("submit", "Submit your latest commit for checking (tests gate, then review). Ends your turn.",
                    {"note": {"type": "string", "description": "what reviewers should know"}}, []),
    "sync_main": _spec("sync_main", "Merge the product's current main branch into your branch (as a commit of "
                       "yours), e.g. when the merge queue says your change conflicts with what landed since.",
                       {}, []),
    "approve": _spec("approve", "Approve this commit of the task. Only the latest commit can be approved.",
                     {"commit": {"type": "string"}, "note": {"type": "string"}}, ["commit", "note"]),
    "request_changes": _spec(
        "request_changes", "Send the task back to its builder with what must change.",
        {"note": {"type": "string"},
         "comments": {"type": "array", "items": {"type": "object", "properties": {
             "file": {"type": "string"}, "line": {"type": "integer"}, "comment": {"type": "string"}},
             "required": ["file", "comment"]}}},
        ["note"]),
    "report_defect": _spec(
        "report_defect", "Report a defect of the commit under review. The cockpit re-runs the reproduction in a "
        "sandbox on a clean checkout of that commit and opens the defect only if it really fails there.",
        {"title": {"type": "string", "description": "what is wrong, in one line"},
         "reproduction": {"type": "string", "description": "a shell command that fails on this commit (run from the "
                          "repository root), or the body of a pytest test file that fails on it"},
         "kind": {"type": "string", "enum": ["command", "test_file"],
                  "description": "what the reproduction is (default: test_file if it defines a test, else command)"},
         "fix": {"type": "object", "additionalProperties": {"type": "string"},
                 "description": "only for a defect in code this change adds (its reproduction cannot run on main): "
                                "files of the change (path -> full new content) with which your test_file passes, "
                                "showing the defect can be closed"}},
        ["title", "reproduction"]),
}
TASK_TOOL_SPECS["remember"] = REMEMBER_SPEC  # every role: a lesson for the sessions after this one


class TaskToolbox:
    """Implements cockpit.agents.loop.Toolbox for one agent on one task."""

    def __init__(self, *, role: str, agent: str, task_id: str, product: str, worktree: Path,
                 worktree_tools: WorktreeTools, store: Store, workspaces: Workspaces, commit: str | None = None,
                 main_branch: str | None = None,
                 reproduce: Callable[..., Awaitable[ReproResult]] | None = None,
                 reproduce_base: Callable[[str, str, str], Awaitable[ReproResult | None]] | None = None,
                 memory: Memory | None = None):
        self.role = role
        self.agent = agent
        self.task_id = task_id
        self.product = product
        self.worktree = worktree
        self.wt_tools = worktree_tools
        self.store = store
        self.workspaces = workspaces
        self.reviewing_commit = commit
        self.main_branch = main_branch
        self.reproduce = reproduce  # (commit, kind, reproduction) -> the cockpit's own run of it
        # the same run on the commit the change started from (its merge base with main), None if there is none
        self.reproduce_base = reproduce_base
        self.memory = memory
        self._names = set(ROLE_TOOLS[role])

    def names(self) -> set[str]:
        return self._names

    def specs(self) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self._names):
            if name in TASK_TOOL_SPECS:
                out.append(TASK_TOOL_SPECS[name])
            elif name in WorktreeTools.SPECS:
                out.append(WorktreeTools.SPECS[name].to_api())
        return out

    async def call(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        try:
            if name in TASK_TOOL_SPECS:
                return await getattr(self, f"_{name}")(tool_input)
            return ToolOutcome(await self.wt_tools.call(name, tool_input))
        except ToolError as e:
            return ToolOutcome(str(e), is_error=True)
        except Refused as r:
            return ToolOutcome(f"refused: {r.reason}", is_error=True)
        except GitError as e:
            return ToolOutcome(str(e), is_error=True)

    def _event(self, kind: str, **data: Any) -> Event:
        return Event(kind=kind, actor=self.agent, product=self.product, task_id=self.task_id, data=data)

    async def _remember(self, inp: dict[str, Any]) -> ToolOutcome:
        if self.memory is None:
            raise ToolError("remember: this session has no memory attached")
        return await remember_from_tool(self.memory, self.store, inp, agent=self.agent, role=self.role,
                                        task_id=self.task_id, product=self.product)

    async def _commit(self, inp: dict[str, Any]) -> ToolOutcome:
        message = str(inp.get("message", "")).strip()
        if not message:
            raise ToolError("commit needs a message")
        try:
            sha = await self.workspaces.commit(self.worktree, message, author=self.agent, main_branch=self.main_branch)
        except UnsafeChange as e:  # on record, like every refused action: the human sees what was tried
            await self.store.append(Event(kind=Kind.REFUSED, actor=self.agent, product=self.product,
                                          task_id=self.task_id, data={"kind": "tool:commit", "reason": str(e)[:2000]}))
            raise
        if sha is None:
            raise ToolError("nothing to commit: the worktree has no changes")
        await self.store.append(self._event(Kind.COMMITTED, sha=sha, message=message[:500]))
        return ToolOutcome(f"committed {sha}")

    async def _submit(self, inp: dict[str, Any]) -> ToolOutcome:
        check_worktree(self.worktree)
        dirty = await git("status", "--porcelain", cwd=self.worktree)
        if dirty.strip():
            raise ToolError("uncommitted changes in the worktree: commit them first, then submit\n" + dirty[:2000])
        task = self.store.task(self.task_id)
        commit = task.commit if task else None
        await self.store.append(self._event(Kind.SUBMITTED, commit=commit, note=str(inp.get("note", ""))[:2000]))
        return ToolOutcome(f"submitted {commit} for checking", ends_session=True)

    async def _sync_main(self, inp: dict[str, Any]) -> ToolOutcome:
        if self.main_branch is None:
            raise ToolError("sync_main: this toolbox does not know the product's main branch")
        check_worktree(self.worktree)
        dirty = await git("status", "--porcelain", cwd=self.worktree)
        if dirty.strip():
            raise ToolError("sync_main: commit or discard your changes first\n" + dirty[:2000])
        try:
            sha = await self.workspaces.sync_main(self.worktree, self.main_branch, author=self.agent, keep_conflicts=True)
        except MergeConflicted as c:
            return ToolOutcome(f"merged {self.main_branch} into your branch with conflicts in {', '.join(c.files)}: "
                               "those files now hold conflict markers (<<<<<<< ours, >>>>>>> main). Edit them to keep "
                               "both sides' intent, run the tests, then commit (that commit is the merge) and submit.")
        if sha is None:
            return ToolOutcome(f"already up to date with {self.main_branch}")
        await self.store.append(self._event(Kind.COMMITTED, sha=sha, message=f"Merge {self.main_branch}"))
        return ToolOutcome(f"merged {self.main_branch} into your branch: {sha}")

    async def _approve(self, inp: dict[str, Any]) -> ToolOutcome:
        commit = str(inp.get("commit", "")).strip()
        task = self.store.task(self.task_id)
        if task and task.commit and commit and task.commit.startswith(commit) and len(commit) >= 7:
            commit = task.commit  # accept an abbreviated sha of the latest commit
        await self.store.append(self._event(Kind.APPROVED, commit=commit, note=str(inp.get("note", ""))[:4000]))
        return ToolOutcome(f"approved {commit}", ends_session=True)

    async def _request_changes(self, inp: dict[str, Any]) -> ToolOutcome:
        note = str(inp.get("note", "")).strip()
        comments = inp.get("comments") or []
        if not isinstance(comments, list):
            raise ToolError("comments must be a list of {file, line, comment}")
        lines = [note] + [f"{c.get('file')}:{c.get('line', '')}: {c.get('comment')}"
                          for c in comments if isinstance(c, dict)]
        await self.store.append(self._event(Kind.CHANGES_REQUESTED, commit=self.reviewing_commit,
                                            note="\n".join(lines)[:4000], comments=comments[:50]))
        return ToolOutcome("changes requested; the task goes back to its builder", ends_session=True)

    async def _unproven(self, commit: str, kind: str, reproduction: str, res: ReproResult, base: ReproResult | None,
                        fix: Any, data: dict[str, Any]) -> ToolOutcome | None:
        """Why an attributable reproduction still proves no defect of the change, None if it does.

        A regression (it passes on main) must say so twice on each side: a flaky reproduction that failed on
        the commit and passed on main by chance does not block a change. A defect in new code (on main it
        stops where what it exercises is missing) must come with a fix of the change's files under which the
        test file passes: `from calc.sub import sub; sub(1, 1); assert 0` fails on main the same way and no
        fix can make it pass (adversary B-08)."""
        if base is None:
            return None
        if not needs_witness(base):
            again, base_again = await self.reproduce(commit, kind, reproduction), await self.reproduce(
                base.commit, kind, reproduction)
            if again.fails and base_again.passes:
                return None
            return ToolOutcome(f"not opened: the cockpit ran it twice on each side and it does not say the same: on "
                               f"{commit[:12]} {res.why}, then {again.why}; on {base.commit[:12]} (main, where the "
                               f"change started) {base.why}, then {base_again.why}. A flaky reproduction shows no "
                               "defect of this change; make it deterministic (fixed seed, no clock, no network).",
                               is_error=True)
        where = (f"on {base.commit[:12]} (main, where the change started) it fails too ({base.why}), as it would "
                 "where what it exercises is missing")
        if kind != "test_file" or not isinstance(fix, dict) or not fix:
            return ToolOutcome(f"not opened: {where}, so main cannot show that it can ever pass. For a defect in code "
                               "this change adds, give the reproduction as a test_file and add `fix`: the change's "
                               "files (path -> full content) with which your test passes.\non main:\n"
                               f"{base.tail()}", is_error=True)
        allowed = await fixable_paths(self.worktree, base.commit, commit)
        bad = sorted(str(p) for p in fix if p not in allowed or not isinstance(fix[p], str))
        if bad:
            return ToolOutcome(f"not opened: a fix may rewrite only files this change added or modified "
                               f"({', '.join(sorted(allowed)) or 'none'}), not {', '.join(bad)}", is_error=True)
        fixed = await self.reproduce(commit, kind, reproduction, fix=fix)
        data.update(fix={p: t[:20_000] for p, t in fix.items()}, fix_exit_code=fixed.exit_code)
        if witnessed(fixed):
            return None
        outcomes = ", ".join(fixed.outcomes) or "none"
        return ToolOutcome(f"not opened: {where}, and with your fix it does not pass either ({fixed.why}; test "
                           f"outcomes: {outcomes}): every test must run and pass. A reproduction no code can pass "
                           f"shows no defect.\nwith the fix:\n{fixed.tail()}", is_error=True)

    async def _report_defect(self, inp: dict[str, Any]) -> ToolOutcome:
        title = str(inp.get("title", "")).strip()
        reproduction = str(inp.get("reproduction", ""))
        if not title or not reproduction.strip():
            raise ToolError("report_defect needs a title and a reproduction")
        kind = str(inp.get("kind") or guess_kind(reproduction))
        if kind not in ("command", "test_file"):
            raise ToolError("kind must be 'command' or 'test_file'")
        task = self.store.task(self.task_id)
        commit = self.reviewing_commit
        if task is None or commit is None or task.commit != commit:
            raise ToolError(f"the commit under review {commit} is no longer the latest of the task: nothing to report on")
        if self.reproduce is None:
            raise ToolError("report_defect: this cockpit cannot re-run reproductions here")
        res = await self.reproduce(commit, kind, reproduction)
        data = {"agent": self.agent, "commit": commit, "title": title[:300], "repro_kind": kind,
                "reproduction": reproduction[:20_000],
                "exit_code": res.exit_code, "timed_out": res.timed_out, "detail": res.tail()}
        if not res.fails:
            await self.store.append(Event(kind=Kind.DEFECT_REJECTED, actor=self.agent, product=self.product,
                                          task_id=self.task_id, data={**data, "reason": res.why}))
            return ToolOutcome(f"not opened: the cockpit re-ran your reproduction on {commit[:12]} and {res.why}, so it "
                               f"shows no defect.\n{res.tail()}", is_error=True)
        base = await self.reproduce_base(commit, kind, reproduction) if self.reproduce_base is not None else None
        if base is not None:
            data.update(base=base.commit, base_exit_code=base.exit_code, base_timed_out=base.timed_out)
        if not attributable(res, base):
            assert base is not None
            reason = (f"it fails on {base.commit[:12]} too, the main commit this change started from ({base.why}): "
                      "it shows no defect of this change")
            await self.store.append(Event(kind=Kind.DEFECT_REJECTED, actor=self.agent, product=self.product,
                                          task_id=self.task_id, data={**data, "reason": reason}))
            return ToolOutcome(f"not opened: {reason}. A defect must fail on the change and pass without it (or fail "
                               "there only because what it exercises is new). If main itself is broken, say so in "
                               f"your notes for the human.\non main:\n{base.tail()}", is_error=True)
        refused = await self._unproven(commit, kind, reproduction, res, base, inp.get("fix"), data)
        if refused is not None:
            await self.store.append(Event(kind=Kind.DEFECT_REJECTED, actor=self.agent, product=self.product,
                                          task_id=self.task_id, data={**data, "reason": refused.text.split("\n")[0]}))
            return refused
        ev = await self.store.append(Event(kind=Kind.DEFECT_OPENED, actor=self.agent, product=self.product,
                                           task_id=self.task_id, data=data))
        t = self.store.task(self.task_id)
        defect_id = next((d.id for d in (t.defects if t else []) if d.event_id == ev.id), "?")
        return ToolOutcome(f"defect {defect_id} opened on {commit[:12]} (event {ev.id}): {res.why} when the cockpit "
                           f"re-ran it.\n{res.tail(15)}")
