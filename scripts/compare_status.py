"""Compare two `cockpit status --json` outputs modulo times, commit ids and rates.

Why: issue 22 is a refactor with no behaviour change; the headless demo's status
before and after must be equal once the parts that differ run to run are masked.
Usage: python scripts/compare_status.py BEFORE.json AFTER.json  (exit 1 and a diff if not equal)
"""

from __future__ import annotations

import difflib
import json
import re
import sys

AGENT_ID = re.compile(r"\b(builder|reviewer|breaker)-\d+\b")
DURATION = re.compile(r"\bin \d+(\.\d+)?s\b")
SHA = re.compile(r"\b[0-9a-f]{7,40}\b")
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
VOLATILE_KEYS = {"burn_usd_per_hour"}


def normalise(value: object, key: str = "") -> object:
    """Mask what differs from run to run: commit ids, timestamps, agent numbers, rates, cost digits."""
    if key in VOLATILE_KEYS or key.endswith("_at") or key.endswith("_s"):
        return "<volatile>"
    if isinstance(value, dict):
        return {k: normalise(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, float) and key.endswith("_usd"):
        return round(value, 3)  # simulated cost varies in the 6th decimal with token counts of ids
    if isinstance(value, str):
        return AGENT_ID.sub(r"\1-<n>", SHA.sub("<sha>", DURATION.sub("in <t>s", ISO_TIME.sub("<time>", value))))
    return value


def main(before_path: str, after_path: str) -> int:
    with open(before_path, encoding="utf-8") as f:
        before = json.dumps(normalise(json.load(f)), indent=2, sort_keys=True).splitlines()
    with open(after_path, encoding="utf-8") as f:
        after = json.dumps(normalise(json.load(f)), indent=2, sort_keys=True).splitlines()
    if before == after:
        print("equal modulo times and ids")
        return 0
    sys.stdout.writelines(line + "\n" for line in difflib.unified_diff(before, after, before_path, after_path, lineterm=""))
    return 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/compare_status.py BEFORE.json AFTER.json")
    sys.exit(main(sys.argv[1], sys.argv[2]))
