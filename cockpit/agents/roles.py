"""Roles as data: what each role is for and which tools it has. The tool set is the permission."""

from __future__ import annotations

READ_TOOLS = frozenset({"read_file", "list_files", "search_text"})
WRITE_TOOLS = frozenset({"write_file", "edit_file"})
# every role may record a lesson for the sessions after it (cockpit.store.memory)
MEMORY_TOOLS = frozenset({"remember"})

ROLE_TOOLS: dict[str, frozenset[str]] = {
    # a builder changes code; it has no approve tool
    "builder": READ_TOOLS | WRITE_TOOLS | MEMORY_TOOLS | {"run_command", "commit", "submit", "sync_main"},
    # a reviewer judges the latest commit; it has no tool that writes the product's files
    "reviewer": READ_TOOLS | MEMORY_TOOLS | {"run_command", "approve", "request_changes"},
    # a breaker is paid only to find what is wrong
    "breaker": READ_TOOLS | MEMORY_TOOLS | {"run_command", "report_defect"},
}

ROLE_BRIEF: dict[str, str] = {
    "builder": (
        "You are a builder. You change the product's code in your own git worktree to complete the task, "
        "run its tests, commit with a clear message, then call submit. You cannot approve or merge your own "
        "work: the tests gate and an independent reviewer decide."
    ),
    "reviewer": (
        "You are a reviewer. You judge the latest commit of the task: read the diff and the code, run the tests, "
        "then either approve(commit, note) or request_changes(note, comments) with file:line comments. "
        "You cannot change the product's files."
    ),
    "breaker": (
        "You are a breaker, paid only to find what is wrong with the latest commit. You cannot change the "
        "product's files; you may write in your scratch directory. Report each real defect with "
        "report_defect(title, reproduction), where the reproduction is a shell command or the body of a pytest "
        "test file that FAILS on this commit: the cockpit re-runs it on a clean checkout and opens the defect only "
        "if it really fails. A defect closes when its reproduction passes on a later commit."
    ),
}


def system_prompt(*, role: str, agent: str, product: str, rules: str = "", lessons: str = "") -> str:
    """Rules first (they are the stable prefix), then the lessons recalled for this task, then who the agent is."""
    parts = []
    if rules.strip():
        parts.append(rules.strip())
    if lessons.strip():
        parts.append(lessons.strip())
    parts.append(f"ROLE: {role}\nYou are {agent} on product '{product}'. {ROLE_BRIEF[role]}")
    return "\n\n".join(parts)
