"""Print which packages of an environment differ from uv.lock: `uv pip freeze | python scripts/lockdiff.py uv.lock`.

`make test-latest` runs it first, so its output says which new releases a failure may come from."""

from __future__ import annotations

import re
import sys
import tomllib


def locked_versions(lock_path: str) -> dict[str, str]:
    with open(lock_path, "rb") as f:
        lock = tomllib.load(f)
    return {_norm(p["name"]): p["version"] for p in lock.get("package", []) if "version" in p}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> int:
    locked = locked_versions(sys.argv[1] if len(sys.argv) > 1 else "uv.lock")
    changed: list[str] = []
    for line in sys.stdin:
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if not m:
            continue
        name, version = _norm(m.group(1)), m.group(2)
        if name == "cockpit":
            continue
        was = locked.get(name)
        if was is None:
            changed.append(f"  {name} {version} (not in the lock)")
        elif was != version:
            changed.append(f"  {name} {was} -> {version}")
    if changed:
        print(f"newest releases differing from uv.lock ({len(changed)}):")
        print("\n".join(changed))
    else:
        print("the newest releases are the locked ones")
    return 0


if __name__ == "__main__":
    sys.exit(main())
