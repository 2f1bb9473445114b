"""`cockpit status --json`: the state of every product and task, from the store alone.

`spend_usd` is real spend; `simulated_usd` what the offline scripted model's calls would have cost
(never added to it); `offline` says why this factory runs on the scripted model (None: online)."""

from __future__ import annotations

from ..agents.client import offline_reason
from ..config import FactoryConfig
from ..store import Store
from .meter import burn_rate, product_budget


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
                "simulated_usd": round(t.simulated_usd, 6),
                "verdicts": [{"gate": v.gate, "commit": v.commit, "actor": v.actor, "outcome": v.outcome.value}
                             for v in t.verdicts],
                "approvals": [{"commit": a.commit, "actor": a.actor} for a in t.approvals],
                "overrides": [{"commit": o.commit, "actor": o.actor, "note": o.note,
                               **({"carried_from": o.carried_from} if o.carried_from else {})} for o in t.overrides],
                "defects": [{"id": d.id, "title": d.title, "state": d.state.value, "actor": d.actor, "commit": d.commit,
                             "closed_by": d.closed_by, "closed_commit": d.closed_commit} for d in t.defects],
            })
        # the merge queue, from the store alone: tasks waiting to land, in the order they became ready
        queue = [t.id for t in sorted((t for t in store.tasks(name) if t.state.value == "merging"),
                                      key=lambda t: t.updated_ts)]
        products.append({"name": name, "tasks": tasks, "queue": queue,
                         "spend_usd": round(await store.spend_total(name), 6),
                         "simulated_usd": round(await store.spend_total(name, simulated=True), 6),
                         **product_budget(config, store, name)})
    return {"products": products, "spend_usd": round(await store.spend_total(), 6),
            "simulated_usd": round(await store.spend_total(simulated=True), 6), "offline": offline_reason(config),
            "burn_usd_per_hour": round(await burn_rate(store), 6)}
