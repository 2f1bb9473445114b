"""The toolbox an agent gets for one task: worktree tools plus the tools that act on the task.

The role decides which tools exist (cockpit.agents.roles.ROLE_TOOLS). The task
tools (commit, submit, approve, request_changes) append events through the
store, so the domain has the last word: a refusal comes back to the model as an
error and is recorded for the human to see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..agents.loop import ToolOutcome
from ..agents.roles import ROLE_TOOLS
from ..agents.tools import ToolError, WorktreeTools
from ..domain.errors import Refused
from ..domain.events import Event, Kind
from ..store import Store
from .workspaces import Workspaces, git


def _spec(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"name": name, "description": description,
            "input_schema": {"type": "object", "properties": properties, "required": required}}


TASK_TOOL_SPECS: dict[str, dict[str, Any]] = {
    "commit": _spec("commit", "Commit every change in your worktree with this message. Returns the commit sha.",
                    {"message": {"type": "string", "description": "what changed and why"}}, ["message"]),
    "submit": _spec("submit", "Submit your latest commit for checking (tests gate, then review). Ends your turn.",
                    {"note": {"type": "string", "description": "what reviewers should know"}}, []),
    "approve": _spec("approve", "Approve this commit of the task. Only the latest commit can be approved.",
                     {"commit": {"type": "string"}, "note": {"type": "string"}}, ["commit", "note"]),
    "request_changes": _spec(
        "request_changes", "Send the task back to its builder with what must change.",
        {"note": {"type": "string"},
         "comments": {"type": "array", "items": {"type": "object", "properties": {
             "file": {"type": "string"}, "line": {"type": "integer"}, "comment": {"type": "string"}},
             "required": ["file", "comment"]}}},
        ["note"]),
}


class TaskToolbox:
    """Implements cockpit.agents.loop.Toolbox for one agent on one task."""

    def __init__(self, *, role: str, agent: str, task_id: str, product: str, worktree: Path,
                 worktree_tools: WorktreeTools, store: Store, workspaces: Workspaces, commit: str | None = None):
        self.role = role
        self.agent = agent
        self.task_id = task_id
        self.product = product
        self.worktree = worktree
        self.wt_tools = worktree_tools
        self.store = store
        self.workspaces = workspaces
        self.reviewing_commit = commit
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

    def _event(self, kind: str, **data: Any) -> Event:
        return Event(kind=kind, actor=self.agent, product=self.product, task_id=self.task_id, data=data)

    async def _commit(self, inp: dict[str, Any]) -> ToolOutcome:
        message = str(inp.get("message", "")).strip()
        if not message:
            raise ToolError("commit needs a message")
        sha = await self.workspaces.commit(self.worktree, message, author=self.agent)
        if sha is None:
            raise ToolError("nothing to commit: the worktree has no changes")
        await self.store.append(self._event(Kind.COMMITTED, sha=sha, message=message[:500]))
        return ToolOutcome(f"committed {sha}")

    async def _submit(self, inp: dict[str, Any]) -> ToolOutcome:
        dirty = await git("status", "--porcelain", cwd=self.worktree)
        if dirty.strip():
            raise ToolError("uncommitted changes in the worktree: commit them first, then submit\n" + dirty[:2000])
        task = self.store.task(self.task_id)
        commit = task.commit if task else None
        await self.store.append(self._event(Kind.SUBMITTED, commit=commit, note=str(inp.get("note", ""))[:2000]))
        return ToolOutcome(f"submitted {commit} for checking", ends_session=True)

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
