"""Start-up must not grow with history: time to open the cockpit (store open + first screen painted)
with 10k, 100k and 1M events already in the store. Anchor: the same with an empty store.

    python bench/startup.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from store_ingest import prefill  # noqa: E402

from cockpit.config import load_factory  # noqa: E402
from cockpit.store import Store  # noqa: E402

GOAL_S = 1.0


async def _open_once(factory: Path) -> float:
    from cockpit.tui.app import CockpitApp

    cfg = load_factory(factory)
    t0 = time.perf_counter()
    store = await Store.open(cfg.store_path)
    app = CockpitApp(store, cfg)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        dt = time.perf_counter() - t0
    await store.close()
    return dt


def _factory(root: Path) -> Path:
    f = root / "factory.toml"
    f.write_text('[factory]\nname = "bench"\n[[products]]\nname = "p0"\npath = "."\ntest_command = "true"\n'
                 '[[products]]\nname = "p1"\npath = "."\ntest_command = "true"\n')
    (root / "memory").mkdir(exist_ok=True)
    return f


def measure(sizes: tuple[int, ...] = (0, 10_000, 100_000, 1_000_000), repeats: int = 3) -> dict[str, Any]:
    out: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        for size in sizes:
            root = Path(d) / f"s{size}"
            root.mkdir()
            f = _factory(root)
            if size:
                prefill(root / "memory" / "cockpit.db", size)
            times = sorted(asyncio.run(_open_once(f)) for _ in range(repeats))
            out[size] = {"median_s": times[len(times) // 2], "min_s": times[0], "max_s": times[-1]}
    return {"open": out}


def main() -> int:
    m = measure()
    for size, t in m["open"].items():
        print(f"{size:>9,} events: open + first paint {t['median_s'] * 1000:.0f} ms "
              f"(spread {t['min_s'] * 1000:.0f}-{t['max_s'] * 1000:.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
