"""The factory's rules as the agents read them: markdown files in rules/, in a stable order.

Read fresh for every agent session, so an edit is in force from the next session
on; the content hash is recorded with every model call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rules:
    text: str
    hash: str
    files: tuple[str, ...]


def load_rules(directory: Path) -> Rules:
    """Every *.md under `directory`, sorted by relative path, each headed by its name."""
    parts: list[str] = []
    names: list[str] = []
    if directory.is_dir():
        for f in sorted(directory.rglob("*.md")):
            rel = f.relative_to(directory).as_posix()
            try:
                body = f.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                continue
            names.append(rel)
            parts.append(f"<!-- rules/{rel} -->\n{body}")
    text = "\n\n".join(parts)
    return Rules(text=text, hash=hashlib.sha256(text.encode()).hexdigest()[:16], files=tuple(names))
