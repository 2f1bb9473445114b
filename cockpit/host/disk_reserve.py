"""The free space no sandboxed command may take: kept for the event store and the rest of the host.

A command writes only where the sandbox binds writable (a worktree, a checkout, a scratch dir) and its
private /tmp (RAM, sized). Nothing else limited the bytes it wrote there: one `cat /dev/zero > x` in a
worktree filled the disk, the store could no longer write, the whole factory stopped, and every restart
stopped the same way (adversary C-10). So:
- before a command starts, each writable directory's filesystem must have more than its reserve free,
  else the command does not run (`DiskLow`);
- while it runs, the free space is read ten times a second and the command's whole process group is
  stopped when it falls below the reserve (`DiskLow` again, with what it printed).
`DiskLow` is not an agent's tool error: the orchestrator blocks the task for the human, naming the
directory, the free space, the reserve and the largest files there. The other tasks go on.

The reserve of a filesystem: a tenth of it, at least 16 MiB, at most 1 GiB. `statvfs` costs microseconds:
read on the event loop.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable
from dataclasses import dataclass

RESERVE_MIN = 16 << 20
RESERVE_MAX = 1 << 30
POLL_S = 0.1
_LARGEST_SCAN = 200_000  # entries walked at most to name the largest files


def reserve_of(total_bytes: int) -> int:
    return max(RESERVE_MIN, min(RESERVE_MAX, total_bytes // 10))


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


@dataclass(frozen=True)
class Low:
    """One writable directory whose filesystem has less free than its reserve."""

    path: str
    free: int
    reserve: int

    def said(self) -> str:
        return (f"the disk holding {self.path} has {_mb(self.free)} free, below the {_mb(self.reserve)} the "
                "cockpit keeps free for its event store and the host")


def low_disk(paths: Iterable[str], reserve: int | None = None) -> Low | None:
    """The first of `paths` whose filesystem has less than its reserve free (unreadable ones are skipped)."""
    for p in paths:
        try:
            st = os.statvfs(p)
        except OSError:
            continue
        free = st.f_bavail * st.f_frsize
        need = reserve if reserve is not None else reserve_of(st.f_blocks * st.f_frsize)
        if free < need:
            return Low(str(p), free, need)
    return None


def largest_files(root: str, n: int = 5) -> list[tuple[int, str]]:
    """The `n` largest regular files under `root` (links not followed), by size: what the human removes."""
    found: list[tuple[int, str]] = []
    seen = 0
    for top, _dirs, files in os.walk(root):  # links to directories are not followed
        for name in files:
            seen += 1
            try:
                st = os.lstat(os.path.join(top, name))
            except OSError:
                continue
            heapq.heappush(found, (st.st_size, os.path.join(top, name)))
            if len(found) > n:
                heapq.heappop(found)
        if seen > _LARGEST_SCAN:
            break
    return sorted(found, reverse=True)


class DiskLow(Exception):
    """A command was not started, or was stopped, because a disk it writes to fell below its reserve."""

    def __init__(self, low: Low, command: str, *, stopped: bool, ended: bool = False, output: str = "",
                 largest: list[tuple[int, str]] | None = None) -> None:
        """`stopped`: killed by the watch while it ran; `ended`: it ended by itself with the disk below the
        reserve (a fast writer meets ENOSPC between two reads); neither: it was never started."""
        self.low, self.command, self.stopped, self.ended, self.output = low, command, stopped, ended, output
        self.largest = largest or []
        super().__init__(self.text())

    def text(self) -> str:
        what = ("was stopped (the disk may have been filled by another command: see the largest files)"
                if self.stopped else "ended with the disk below it" if self.ended else "was not started")
        lines = [f"{self.low.said()}: the command {what}:", f"  {self.command[:300]}"]
        if self.largest:
            lines.append("largest files:")
            lines += [f"  {_mb(size)}  {path}" for size, path in self.largest]
        if self.output.strip():
            lines.append("its last output:\n" + "\n".join(self.output.rstrip().splitlines()[-10:]))
        lines.append("Free space there (remove what is not needed), then retry the task.")
        return "\n".join(lines)
