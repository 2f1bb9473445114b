"""Is a commit only a merge of main into a commit a human overrode? Checked with git, never assumed.

A human override covers the commit the human looked at. When main moved and that commit conflicts, a
builder merges main into it and resolves the conflict; the override carries to that re-merge only if
it brings nothing the human did not see and main's reviewers did not review (docs/gates.md, "A human
override across a merge conflict"). What "only a merge" means here, all of it from git:

- the commit's parents are exactly [the overridden commit (or the re-merge it was carried to), a
  commit on main];
- every path git's own merge of those two parents (`merge-tree --write-tree`) resolves by itself is
  exactly as git has it (content, mode, presence): no new file, no edit, no revert, no chmod;
- every path that conflicted is a text file both sides still have, and its resolution is git's own
  file merge (`merge-file --diff3`) outside the conflicts and, inside each conflict, the base with
  both sides' changes applied, each exactly once (where both sides changed the same lines no
  resolution is only a merge: a human decides).

Whatever fails is said plainly in `beyond`, and `shown` is the diff the human then sees.
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from ..host import safe_git
from .workspaces import GitError, _identity, _run_git, git

SHOWN_CAP = 2500  # characters of diff shown to the human beside the reasons
_REGULAR = ("100644", "100755")
_MAX_ORDERS = 64  # orders of same-point insertions tried in one conflict before giving up (a human decides)


@dataclass
class Remerge:
    """What git says about `commit` as a re-merge of main into `from_commit`; `beyond` empty means only that."""

    commit: str
    from_commit: str
    parents: list[str] = field(default_factory=list)
    main_commit: str | None = None
    merge_tree: str | None = None  # git's own merge of the two parents (conflicted files with markers)
    conflicted: list[str] = field(default_factory=list)
    beyond: list[str] = field(default_factory=list)
    shown: str = ""

    @property
    def only_a_merge(self) -> bool:
        return not self.beyond and self.main_commit is not None and self.merge_tree is not None

    def facts(self) -> dict[str, Any]:
        """The facts the domain checks before it lets the override carry (`override.carried` data)."""
        return {"commit": self.commit, "parents": list(self.parents), "main_commit": self.main_commit,
                "merge_tree": self.merge_tree, "conflicted": list(self.conflicted), "beyond": list(self.beyond)}

    def why_not(self) -> str:
        """The reasons, for the human who is asked instead (`shown` is the diff to put beside them)."""
        return "; ".join(self.beyond) or "it was not checked"


async def check_remerge(repo: Path, main_branch: str, from_commit: str, commit: str) -> Remerge:
    """Whether `commit` merges `main_branch` into `from_commit` and holds nothing beyond (module docstring).
    A check git could not finish refuses the carry (the human is asked), it never lets it through."""
    r = Remerge(commit=commit, from_commit=from_commit)
    try:
        return await _check(repo, main_branch, r)
    except (GitError, OSError, ValueError) as e:
        r.beyond.append(f"git could not check it ({str(e).strip()[:200]})")
        return r


async def _check(repo: Path, main_branch: str, r: Remerge) -> Remerge:
    from_commit, commit = r.from_commit, r.commit
    r.parents = (await git("rev-list", "--parents", "-n", "1", commit, cwd=repo)).split()[1:]
    if len(r.parents) != 2 or r.parents[0] != from_commit:
        r.beyond.append(f"{commit[:12]} is not a merge of {main_branch} into {from_commit[:12]} (its parents: "
                        f"{', '.join(p[:12] for p in r.parents) or 'none'})")
        r.shown = await _diff(repo, from_commit, commit, f"what {commit[:12]} changed since {from_commit[:12]}")
        return r
    theirs = r.parents[1]
    rc, _, _ = await _run_git("merge-base", "--is-ancestor", theirs, f"refs/heads/{main_branch}", cwd=repo)
    if rc != 0:
        r.beyond.append(f"its second parent {theirs[:12]} is not on {main_branch}")
        r.shown = await _diff(repo, from_commit, commit, f"what {commit[:12]} changed since {from_commit[:12]}")
        return r
    r.main_commit = theirs
    rc, out, err = await merge_tree(repo, from_commit, theirs)
    if rc not in (0, 1):
        r.beyond.append(f"git could not merge {from_commit[:12]} and {theirs[:12]} to compare: {err.strip()[:200]}")
        return r
    r.merge_tree, stages = _parse_merge_tree(out)
    r.conflicted = sorted(stages)
    changed = [f for f in (await git("diff", "--no-renames", "--name-only", "-z", r.merge_tree, commit,
                                     cwd=repo)).split("\0") if f]
    for path in changed:
        if path not in stages:
            r.beyond.append(f"{path} differs from git's own merge of the two (a change beyond the merge)")
    for path in r.conflicted:
        why = await _resolution_beyond(repo, path, stages[path], commit)
        if why:
            r.beyond.append(f"{path}: {why}")
    if r.beyond:
        r.shown = await _remerge_diff(repo, commit)
    return r


async def merge_tree(repo: Path, ours: str, theirs: str) -> tuple[int, str, str]:
    """git's own merge of two commits (`merge-tree --write-tree -z`), read with no attributes at all.

    Run from the repository, git 2.39 takes `.gitattributes` from whatever is checked out there (the human's
    checkout, an uncommitted edit, an agent's `.gitattributes` that landed on main) and applies its built-in
    drivers: `merge=union` turns both sides changing the same lines into a clean "git's merge" that nobody
    reviewed, which the hunk rule below would send to the human. So git runs from an empty directory with
    GIT_DIR named: no work tree, no index, so no `.gitattributes` (only `info/attributes` inside the git dir,
    which no agent can write). An honest re-merge git merged differently under such a rule is refused."""
    git_dir = await git("rev-parse", "--absolute-git-dir", cwd=repo)
    with tempfile.TemporaryDirectory(prefix="cockpit-merge-tree-") as empty:
        rc, out, err = await safe_git.run("merge-tree", "--write-tree", "-z", ours, theirs, cwd=Path(empty),
                                          env={"GIT_DIR": git_dir})
    return rc, out.decode("utf-8", errors="replace"), err.decode("utf-8", errors="replace")


async def merge_commit(repo: Path, ours: str, theirs: str, message: str) -> str | None:
    """A commit object (parents `ours`, `theirs`) holding git's own merge of the two, attributes unread; None
    when git cannot merge them by itself (a conflict, unrelated histories). Nothing is checked out, no ref moves."""
    rc, out, _ = await merge_tree(repo, ours, theirs)
    if rc != 0:
        return None
    tree, stages = _parse_merge_tree(out)
    if stages or not tree:
        return None
    return await git("commit-tree", tree, "-p", ours, "-p", theirs, "-m", message, cwd=repo,
                     env=_identity("cockpit"))


def _parse_merge_tree(out: str) -> tuple[str, dict[str, dict[int, tuple[str, str]]]]:
    """The merged tree's id and, per conflicted path, its index stages {1: base, 2: ours, 3: theirs} as
    (mode, blob). `merge-tree --write-tree -z` prints the tree, the stage entries, an empty field, messages."""
    fields = out.split("\0")
    tree, stages = fields[0].strip(), {}
    for f in fields[1:]:
        if not f:
            break
        meta, _, path = f.partition("\t")
        mode, oid, stage = meta.split()
        stages.setdefault(path, {})[int(stage)] = (mode, oid)
    return tree, stages


async def _blob(repo: Path, oid: str) -> bytes:
    rc, out, err = await safe_git.run("cat-file", "blob", oid, cwd=repo)
    if rc != 0:
        raise OSError(f"git cat-file blob {oid}: {err.decode(errors='replace').strip()}")
    return out


async def _resolution_beyond(repo: Path, path: str, stage: dict[int, tuple[str, str]], commit: str) -> str | None:
    """None if `commit`'s `path` resolves the conflict with both sides' changes and nothing else; else why not."""
    if 2 not in stage or 3 not in stage:
        return ("one side deleted or renamed it while the other changed it: its resolution is a choice only the "
                "human makes")
    if any(mode not in _REGULAR for mode, _ in stage.values()):
        return "not a regular file on both sides (a link, a submodule or a type change): the human decides"
    rc, out, _ = await _run_git("ls-tree", "-z", commit, "--", path, cwd=repo)
    entry = out.split("\0")[0]
    meta, _, name = entry.partition("\t")
    if rc != 0 or name != path or len(meta.split()) != 3:
        return "the resolution deletes it (both sides have it)"
    mode, kind, oid = meta.split()
    if kind != "blob" or mode not in {stage[2][0], stage[3][0]}:
        return f"the resolution makes it a {kind} of mode {mode}, which neither side has"
    base = await _blob(repo, stage[1][1]) if 1 in stage else b""
    ours, theirs, resolved = await _blob(repo, stage[2][1]), await _blob(repo, stage[3][1]), await _blob(repo, oid)
    if any(b"\0" in b for b in (base, ours, theirs, resolved)):
        return "a binary file: git cannot show a resolution of it line by line, so the human decides"
    texts = [b.decode("utf-8", errors="surrogateescape") for b in (ours, base, theirs)]
    marker = marker_size(texts)
    with tempfile.TemporaryDirectory(prefix="cockpit-remerge-") as tmp:
        files = []
        for name, text in zip(("ours", "base", "theirs"), (ours, base, theirs), strict=True):
            (Path(tmp) / name).write_bytes(text)
            files.append(str(Path(tmp) / name))
        rc, merged, err = await safe_git.run("merge-file", "-p", "--diff3", f"--marker-size={marker}",
                                             "-L", "ours", "-L", "base", "-L", "theirs", *files, cwd=repo)
    if rc < 0 or rc > 127:
        return f"git merge-file could not merge it again: {err.decode(errors='replace').strip()[:200]}"
    return resolution_beyond(merged.decode("utf-8", errors="surrogateescape"), marker,
                             resolved.decode("utf-8", errors="surrogateescape"))


def marker_size(texts: list[str]) -> int:
    """Conflict markers longer than any run of marker characters that starts a line of the inputs, so a
    line of content can never be read as a marker (an attacker's `=======` line included)."""
    longest = 0
    for text in texts:
        for line in text.splitlines():
            for ch in "<|=>":
                run = len(line) - len(line.lstrip(ch))
                longest = max(longest, run)
    return max(7, longest + 1)


def _segments(merged: str, marker: int) -> list[tuple[list[str], list[str], list[str]] | list[str]]:
    """git's diff3 output as common runs (a list of lines) and conflicts (ours, base, theirs)."""
    out: list[Any] = []
    common: list[str] = []
    side: list[list[str]] = []
    state = "common"
    opens, bases, mids, ends = "<" * marker, "|" * marker, "=" * marker, ">" * marker

    def is_marker(line: str, m: str) -> bool:
        body = line.rstrip("\r\n")
        return body == m or body.startswith(m + " ")

    for line in merged.splitlines(keepends=True):
        if state == "common" and is_marker(line, opens):
            out.append(common)
            common, side, state = [], [[], [], []], "ours"
        elif state == "ours" and is_marker(line, bases):
            state = "base"
        elif state in ("ours", "base") and is_marker(line, mids):
            state = "theirs"
        elif state == "theirs" and is_marker(line, ends):
            out.append((side[0], side[1], side[2]))
            state = "common"
        elif state == "common":
            common.append(line)
        else:
            side[{"ours": 0, "base": 1, "theirs": 2}[state]].append(line)
    if state != "common":
        raise ValueError("unterminated conflict in git merge-file's output")
    out.append(common)
    return out


def _edits(a: list[str], b: list[str]) -> list[tuple[int, int, tuple[str, ...]]]:
    sm = SequenceMatcher(None, a, b, autojunk=False)
    return [(i1, i2, tuple(b[j1:j2])) for tag, i1, i2, j1, j2 in sm.get_opcodes() if tag != "equal"]


def both_changes(base: list[str], ours: list[str], theirs: list[str]) -> list[list[str]]:
    """Every way to apply both sides' changes to `base`, each exactly once; [] where they change the same
    lines (then no resolution is only a merge). Insertions at the same point may come in either order."""
    eo, et = _edits(base, ours), _edits(base, theirs)
    edits = sorted(set(eo) | set(et))  # an identical change on both sides is applied once
    for (a1, a2, _), (b1, b2, _) in itertools.combinations(edits, 2):
        if max(a1, b1) < min(a2, b2):
            return []  # both sides changed the same base lines
        if (a1 == a2 and b1 < a1 < b2) or (b1 == b2 and a1 < b1 < a2):
            return []  # one side inserted inside lines the other replaced
    groups: list[list[tuple[int, int, tuple[str, ...]]]] = []
    for e in edits:
        if groups and groups[-1][0][0] == e[0]:
            groups[-1].append(e)
        else:
            groups.append([e])
    choices = [list(itertools.permutations(g)) for g in groups]
    count = 1
    for c in choices:
        count *= len(c)
    if count > _MAX_ORDERS:
        return []
    results = []
    for order in itertools.product(*choices):
        out: list[str] = []
        cur = 0
        for i1, i2, new in itertools.chain.from_iterable(order):
            if i1 > cur:
                out.extend(base[cur:i1])
            out.extend(new)
            cur = max(cur, i2)
        out.extend(base[cur:])
        if out not in results:
            results.append(out)
    return results


def resolution_beyond(merged: str, marker: int, resolved: str) -> str | None:
    """None if `resolved` is git's merge (`merged`, diff3 style with markers of `marker` characters) with each
    conflict replaced by its base with both sides' changes applied; else what the resolution does beyond."""
    segs = _segments(merged, marker)
    lines = _ended(resolved.splitlines(keepends=True))
    # merge-file ends a side's last line before a marker with a newline: whether the file ends with one is
    # not a change worth asking about, so every text here ends with one
    for seg in reversed(segs):
        if isinstance(seg, list) and seg:
            seg[:] = _ended(seg)
            break
        if not isinstance(seg, list):
            for side in seg:
                side[:] = _ended(side)
            break
    at = {0}
    for seg in segs:
        if isinstance(seg, list):
            cands = [seg]
        else:
            ours, base, theirs = seg
            cands = both_changes(base, ours, theirs)
            if not cands:
                return ("both sides changed the same lines here, so any resolution is a change of its own "
                        f"(ours: {_first(ours)}, main: {_first(theirs)})")
        nxt = {p + len(c) for p in at for c in cands if lines[p:p + len(c)] == c}
        if not nxt:
            return f"its resolution is not both sides' changes and nothing else, near line {max(at) + 1}"
        at = nxt
    if len(lines) not in at:
        return (f"its resolution is not both sides' changes and nothing else: it goes on after git's merge ends, "
                f"from line {max(at) + 1}")
    return None


def _ended(lines: list[str]) -> list[str]:
    return [*lines[:-1], lines[-1] + "\n"] if lines and not lines[-1].endswith("\n") else lines


def _first(lines: list[str]) -> str:
    text = next((ln.strip() for ln in lines if ln.strip()), "")
    return repr(text[:60]) if text else "nothing"


async def _diff(repo: Path, old: str, new: str, title: str) -> str:
    rc, out, _ = await _run_git("diff", "--no-color", "--stat", "-p", old, new, cwd=repo)
    return _cap(f"{title}:\n{out}") if rc == 0 and out.strip() else ""


async def _remerge_diff(repo: Path, commit: str) -> str:
    """git's own view of what the merge commit did beyond its automatic merge (conflict markers included)."""
    rc, out, _ = await _run_git("show", "--no-color", "--format=", "--remerge-diff", commit, cwd=repo)
    title = f"what {commit[:12]} does beyond git's own merge of its parents (git show --remerge-diff)"
    return _cap(f"{title}:\n{out}") if rc == 0 and out.strip() else ""


def _cap(text: str) -> str:
    return text if len(text) <= SHOWN_CAP else text[:SHOWN_CAP] + f"\n… ({len(text) - SHOWN_CAP} more characters)"
