"""Who did it: every event names an actor, and the actor's role decides what it may do.

Actor ids are plain strings so they read well in logs: `builder-1`,
`reviewer-2`, `breaker-1`, `system`, `human:alice`.
"""

from __future__ import annotations

import re
from enum import StrEnum

from .errors import Refused


class Role(StrEnum):
    BUILDER = "builder"
    REVIEWER = "reviewer"
    BREAKER = "breaker"
    SYSTEM = "system"
    HUMAN = "human"


_AGENT_ID = re.compile(r"^(builder|reviewer|breaker)-(\d+)$")


def role_of(actor: str) -> Role:
    """The role an actor id belongs to; unknown ids are refused, never guessed."""
    if actor == "system":
        return Role.SYSTEM
    if actor.startswith("human:") and len(actor) > len("human:"):
        return Role.HUMAN
    m = _AGENT_ID.match(actor)
    if m:
        return Role(m.group(1))
    raise Refused(f"unknown actor {actor!r}: expected builder-N, reviewer-N, breaker-N, system or human:NAME")


def agent_id(role: Role | str, n: int) -> str:
    return f"{Role(role).value}-{n}"
