"""The Textual cockpit: `CockpitApp(store, config, orchestrator=...)`.

Imported lazily, so that plain-text helpers under `cockpit.tui` (format.py) can be used by the
command line (`cockpit tail`) and the agent-log writer without loading Textual.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CockpitApp"]


def __getattr__(name: str) -> Any:
    if name == "CockpitApp":
        from .app import CockpitApp

        return CockpitApp
    raise AttributeError(name)
