from dataclasses import dataclass


@dataclass
class Entry:
    title: str
    body: str = ""


def new_entry(title: str, body: str = "") -> Entry:
    """A new entry; the title is required."""
    if not title.strip():
        raise ValueError("an entry needs a title")
    return Entry(title=title.strip(), body=body)
