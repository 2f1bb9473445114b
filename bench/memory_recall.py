"""Recall from a big memory: the top-10 lessons for a task out of 100,000, median and p99.

    python -m bench.memory_recall [--lessons 100000] [--queries 300] [--seed 1]

The lessons are synthetic but shaped like real ones: 12-40 words drawn from a Zipf-distributed
vocabulary of 8,000 words (so common words match thousands of lessons, as "test" or "file" do),
spread over 20 products plus global ones, a few deleted, superseded or pinned, ages spread over
a year. The store is the real one (migrations, FTS5 triggers); the lessons go in with one bulk
INSERT, and every query is `Memory.recall` exactly as an agent session calls it: pinned
lessons of the scope, then bm25 over the task's title and body, faded ones left out, the
token budget applied. The goal (issue 4): median under 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cockpit.store import Store
from cockpit.store.memory import Memory, fingerprint

PRODUCTS = [f"product{i:02d}" for i in range(20)]
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "de", "po", "qu", "ze", "ba", "fi", "gu", "ha",
              "jo", "xe", "wy", "cy"]


def vocabulary(n: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class Corpus:
    def __init__(self, seed: int, size: int = 8000):
        self.rng = random.Random(seed)
        self.words = vocabulary(size, self.rng)
        self.rng.shuffle(self.words)
        self.cum_weights = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(self.words))))

    def text(self, lo: int, hi: int) -> str:
        return " ".join(self.rng.choices(self.words, cum_weights=self.cum_weights, k=self.rng.randint(lo, hi)))


def build(db: Path, lessons: int, seed: int, now: float) -> float:
    """A store at `db` holding `lessons` lessons; returns the seconds it took."""
    started = time.perf_counter()

    async def migrate() -> None:
        await (await Store.open(db)).close()

    asyncio.run(migrate())
    corpus = Corpus(seed)
    rows = []
    for i in range(1, lessons + 1):
        text = corpus.text(12, 40) + "."
        r = corpus.rng.random()
        product = None if r < 0.05 else corpus.rng.choice(PRODUCTS)
        created = now - corpus.rng.uniform(0, 365) * 86400
        used = created + corpus.rng.uniform(0, now - created) if corpus.rng.random() < 0.5 else None
        rows.append((i, text, product, "builder", " ".join(corpus.text(1, 3).split()[:3]), f"T{i}", None, None,
                     "builder-1", created, created, used, int(used is not None), None,
                     int(corpus.rng.random() < 0.001), int(corpus.rng.random() < 0.01), fingerprint(text)))
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO lessons(id, text, product, role, tags, source_task, source_commit, source_event, source_actor, "
            "created_ts, updated_ts, last_used_ts, use_count, superseded_by, pinned, deleted, fingerprint) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.execute("UPDATE lessons SET superseded_by = id + 1 WHERE id % 500 = 0")
        conn.execute("INSERT INTO lessons_fts(lessons_fts) VALUES ('optimize')")
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(lessons: int = 100_000, queries: int = 300, seed: int = 1, directory: Path | None = None) -> dict[str, Any]:
    """Build a memory of `lessons` lessons and time `queries` recalls; figures in milliseconds."""
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="cockpit-bench-recall-", dir=directory) as d:
        db = Path(d) / "cockpit.db"
        build_s = build(db, lessons, seed, now)
        asks = Corpus(seed + 1)

        async def run() -> tuple[list[float], list[int]]:
            store = await Store.open(db)
            try:
                memory = Memory(store, fade_days=60)
                times, hits = [], []
                for i in range(queries + 20):
                    task = f"{asks.text(4, 9)}\n\n{asks.text(20, 60)}"
                    product = PRODUCTS[i % len(PRODUCTS)]
                    t0 = time.perf_counter()
                    got = await memory.recall(task, product=product, limit=10, token_budget=1500)
                    elapsed = (time.perf_counter() - t0) * 1000
                    if i >= 20:  # the first ones warm the page cache
                        times.append(elapsed)
                        hits.append(len(got))
                return times, hits
            finally:
                await store.close()

        times, hits = asyncio.run(run())
    return {
        "lessons": lessons,
        "queries": queries,
        "p50_ms": round(statistics.median(times), 3),
        "p99_ms": round(percentile(times, 0.99), 3),
        "mean_hits": round(statistics.mean(hits), 2),
        "build_s": round(build_s, 2),
        "goal_p50_ms": 10.0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lessons", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    r = measure(args.lessons, args.queries, args.seed)
    print(f"memory recall: top-10 of {r['lessons']:,} lessons, {r['queries']} queries: "
          f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms (goal: p50 < {r['goal_p50_ms']} ms); "
          f"{r['mean_hits']} lessons per recall; built in {r['build_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
