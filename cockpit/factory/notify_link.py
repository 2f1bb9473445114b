"""Links to a task in the browser cockpit, for notices: `[notify] link_base`, or a running `cockpit serve`.

`cockpit serve` writes `serve.json` (its URL and pid) next to the store while it serves and removes it when it
stops; a sender reads it for each message, so a notice carries `…/task/T2` while the browser cockpit is up
(that page opens the cockpit on the task) and only the commands to act when it is not. A marker left by a
serve that was killed is ignored: its pid is gone.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import quote

from ..config import FactoryConfig

TASK_ID = re.compile(r"^T\d{1,9}$")
"""What a task id looks like (the store assigns T1, T2, …): the only thing a /task/ URL may carry."""


def marker_path(config: FactoryConfig) -> Path:
    return config.store_path.with_name("serve.json")


def write_marker(config: FactoryConfig, url: str) -> Path:
    """Record that this process serves the cockpit at `url` (removed by `remove_marker`)."""
    path = marker_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".serve.{os.getpid()}.json")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    tmp.replace(path)
    return path


def remove_marker(config: FactoryConfig) -> None:
    """Remove the marker if it is this process's (another serve may have taken over since)."""
    path = marker_path(config)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def served_url(config: FactoryConfig) -> str | None:
    """The URL of a running `cockpit serve` on this factory, or None."""
    try:
        data = json.loads(marker_path(config).read_text())
        url, pid = str(data["url"]), int(data["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if _alive(pid) else None


def link_base(config: FactoryConfig) -> str | None:
    """Where task links point: `[notify] link_base` if set, else a running `cockpit serve`, else None."""
    return config.notify.link_base or served_url(config)


def task_link(base: str, task_id: str) -> str | None:
    """`base/task/T2` (None for what is not a task id)."""
    return f"{base.rstrip('/')}/task/{quote(task_id)}" if TASK_ID.match(task_id) else None
