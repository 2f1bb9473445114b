"""docs/architecture.md is the design the code cites: every "invariant N" in the code or the tests names a row
of its table, every file a row names exists, and nothing cites a design file outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
CITE = re.compile(r"\binvariants? (\d+)(?:\s*-\s*(\d+))?", re.IGNORECASE)
ROW = re.compile(r"^\| (\d+) \|", re.MULTILINE)
FILE = re.compile(r"`((?:cockpit/|tests/)?[\w/]+\.py)`")


def cited_numbers(text: str) -> set[int]:
    """The invariant numbers a text cites ("invariant 6", "invariants 1-3")."""
    out: set[int] = set()
    for m in CITE.finditer(text):
        lo = int(m.group(1))
        out.update(range(lo, int(m.group(2) or lo) + 1))
    return out


def sources() -> list[Path]:
    return sorted(p for d in ("cockpit", "tests", "bench") for p in (ROOT / d).rglob("*.py") if p != Path(__file__))


def test_every_cited_invariant_is_a_row_of_the_doc():
    rows = {int(n) for n in ROW.findall(DOC.read_text())}
    assert rows == set(range(1, len(rows) + 1)), f"{DOC}: the invariants are numbered 1..n without gaps: {sorted(rows)}"
    cited = {p.relative_to(ROOT): cited_numbers(p.read_text()) for p in sources()}
    assert set().union(*cited.values()) >= {1, 2, 3, 4, 5, 6, 8}, "the citations this test reads were not found at all"
    unknown = {str(p): sorted(n - rows) for p, n in cited.items() if n - rows}
    assert not unknown, f"cited invariants that docs/architecture.md does not number: {unknown}"


def test_the_checker_sees_an_unknown_number():
    # liveness: the parser reads both forms, so a citation of a number the doc lacks would be reported
    assert cited_numbers("confined (invariant 6); Invariants 1-3 hold") == {1, 2, 3, 6}


def test_nothing_cites_a_design_file_outside_the_repository():
    hits = [str(p.relative_to(ROOT)) for p in sources() if "DESIGN.md" in p.read_text()]
    assert not hits, f"these cite DESIGN.md, which is not in the repository: cite docs/architecture.md: {hits}"


def test_every_file_the_doc_names_exists():
    text = DOC.read_text()
    named = set(FILE.findall(text))
    assert len(named) > 20, named
    missing = sorted(n for n in named if not ((ROOT / n).exists() or (ROOT / "cockpit" / n).exists()))
    assert not missing, f"{DOC} names files that do not exist: {missing}"
