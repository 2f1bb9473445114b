"""`cockpit status --json`: the state of every product and task, from the store alone."""

from __future__ import annotations

from ..config import FactoryConfig
from ..store import Store


async def status(config: FactoryConfig, store: Store) -> dict:
    names = [p.name for p in config.products]
    for t in store.tasks():
        if t.product not in names:
            names.append(t.product)
    products = []
    for name in names:
        tasks = []
        for t in store.tasks(name):
            tasks.append({
                "id": t.id,
                "title": t.title,
                "state": t.state.value,
                "blocked_by": list(t.blocked_by),
                "block_detail": t.block_detail,
                "commit": t.commit,
                "merged_commit": t.merged_commit,
                "rounds": t.rounds,
                "spend_usd": round(t.spend_usd, 6),
                "verdicts": [{"gate": v.gate, "commit": v.commit, "actor": v.actor, "outcome": v.outcome.value}
                             for v in t.verdicts],
                "approvals": [{"commit": a.commit, "actor": a.actor} for a in t.approvals],
                "overrides": [{"commit": o.commit, "actor": o.actor, "note": o.note} for o in t.overrides],
            })
        products.append({"name": name, "tasks": tasks, "spend_usd": round(await store.spend_total(name), 6)})
    return {"products": products, "spend_usd": round(await store.spend_total(), 6)}
