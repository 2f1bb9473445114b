"""The domain core: pure, typed, no I/O. Invariants 1-3, the arithmetic of 4 and the text of 13 (docs/architecture.md)."""

from .actors import Role, role_of
from .errors import Refused
from .events import Event, Kind
from .tasks import Task, TaskState, apply, create, fold, gate_lights, may_merge, missing_gates

__all__ = [
    "Event", "Kind", "Refused", "Role", "Task", "TaskState",
    "apply", "create", "fold", "gate_lights", "may_merge", "missing_gates", "role_of",
]
