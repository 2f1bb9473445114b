"""Why a product's test command failed on its first run, said so a person can fix it (`cockpit product add`).

pytest's tail ("13 errors during collection") hides the cause; the first collection error, shown
whole, names it (`ModuleNotFoundError: No module named 'cachetools'`). When the missing module is
the project's own package under `src/` (a src layout), the likely fix is known: put `src` on the
path (`PYTHONPATH=src`) or install the project (an editable install).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ERROR_LINES = 40

_HEADER = re.compile(r"^_{3,} (ERROR collecting .+?|.+?) _{3,}$")
_SECTION = re.compile(r"^={3,}.*={3,}$")
_MISSING = re.compile(r"ModuleNotFoundError: No module named '([A-Za-z_][\w.]*)'")


def first_collection_error(output: str, max_lines: int = MAX_ERROR_LINES) -> str | None:
    """The first `ERROR collecting ...` section of pytest's output, whole (up to `max_lines`), or None."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if _HEADER.match(line) and "ERROR collecting" in line), None)
    if start is None:
        return None
    end = start + 1
    while end < len(lines) and not _HEADER.match(lines[end]) and not _SECTION.match(lines[end]):
        end += 1
    section = lines[start:end]
    if len(section) > max_lines:
        section = [*section[:max_lines - 1], f"... ({len(section) - max_lines + 1} more lines)"]
    return "\n".join(section)


def missing_module(text: str) -> str | None:
    """The top-level module a `ModuleNotFoundError` names, or None."""
    m = _MISSING.search(text)
    return m.group(1).split(".")[0] if m else None


@dataclass(frozen=True)
class Diagnosis:
    error: str | None  # the first collection error, whole
    module: str | None  # the module it could not import
    src_layout: bool  # that module is the project's own, under src/
    fixed_command: str | None  # the command that likely passes (PYTHONPATH=src ...), None if no guess

    def advice(self, python_hint: str = "") -> list[str]:
        """What to do, one line each, likeliest first."""
        if self.module is None:
            return []
        if self.src_layout:
            return [f"the tests import {self.module!r}, which lives in src/ (a src layout) and is not on the path:",
                    f"  --test \"{self.fixed_command}\"   (put src/ on the path for the tests gate), or",
                    "  install the project (an editable install: pip install -e .) into the interpreter the gate runs, "
                    "or add pythonpath = [\"src\"] under [tool.pytest.ini_options] in pyproject.toml"]
        return [f"the tests import {self.module!r}, which the gate's interpreter does not have{python_hint}: install "
                "the project's dependencies into it (pip install -e . / -r requirements.txt), or give --test with "
                "your project's own interpreter (e.g. \".venv/bin/python -m pytest -q\")"]


def diagnose(output: str, command: str, src_entries: set[str]) -> Diagnosis:
    """Read a failed run's output; `src_entries` are the names directly under the repo's `src/` on its branch."""
    error = first_collection_error(output)
    module = missing_module(error or output)
    src_layout = module is not None and (module in src_entries or f"{module}.py" in src_entries)
    fixed = f"PYTHONPATH=src {command}" if src_layout and "PYTHONPATH" not in command else None
    return Diagnosis(error, module, src_layout, fixed)


__all__ = ["Diagnosis", "diagnose", "first_collection_error", "missing_module"]
