"""`cockpit rules ...` and `cockpit memory ...`: check and show the rules, search and tend the memory.

Rules: `check` validates every rule file, the factory's and each product's own (read from its
main branch), and exits 2 naming file:line; `show` prints what a role is given on a product.
Memory: export/import markdown (one file per product under the factory's memory dir), search,
list, and the human's hygiene: edit, pin, unpin, delete, restore (undo a delete), supersede.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from ..agents.roles import ROLE_TOOLS
from ..config import ConfigError, FactoryConfig, load_factory
from ..domain.errors import Refused
from ..domain.visible import visible, visible_line
from ..store.memory import Lesson, Memory
from ..factory.rules import RuleBook, check_rules
from .store_access import with_store


def _products(config: FactoryConfig) -> dict[str, tuple[Path, str]]:
    return {p.name: (config.product_path(p.name), p.main_branch) for p in config.products}


# --- rules ----------------------------------------------------------------------------------------


def cmd_rules_check(args: argparse.Namespace) -> int:
    if args.dir is not None:
        rules_dir, products = Path(args.dir), {}
        if not rules_dir.is_dir():
            raise ConfigError(f"{rules_dir}: no such rules directory")
    else:
        config = load_factory(args.factory)
        rules_dir, products = config.rules_path, _products(config)
    files, errors = check_rules(rules_dir, products)
    for e in errors:
        print(visible(str(e)))
    if errors:
        print(f"{len(errors)} error{'s' if len(errors) != 1 else ''} in the rules; the last good version of a broken "
              "file stays in force while the cockpit runs.", file=sys.stderr)
        return 2
    print(f"{len(files)} rule file{'s' if len(files) != 1 else ''} OK ({rules_dir}"
          f"{', ' + str(len(products)) + ' products' if products else ''})")
    return 0


def cmd_rules_show(args: argparse.Namespace) -> int:
    config = load_factory(args.factory)
    if args.product is not None:
        try:
            config.product(args.product)
        except KeyError:
            names = ", ".join(p.name for p in config.products) or "none"
            raise Refused(f"no product {args.product!r} in {config.path} (products: {names})") from None
    book = RuleBook(config.rules_path, products=_products(config))
    book.refresh()
    if args.product is not None:
        try:
            book.refresh_product_sync(args.product)
        except Exception as e:  # an unreadable repo: show the factory's rules, say so
            print(f"cockpit: the rules of {args.product} could not be read from its main branch: {e}", file=sys.stderr)
    rules = book.effective(args.role, args.product)
    if args.json:
        print(json.dumps({"role": args.role, "product": args.product, "hash": rules.hash, "files": list(rules.files),
                          "text": rules.text, "errors": [e.as_data() for e in book.errors()]}, indent=2))
        return 0
    for e in book.errors():
        print(f"cockpit: broken, not shown: {e}", file=sys.stderr)
    print(f"# rules for {args.role} on {args.product or '(any product)'}: hash {rules.hash}, "
          f"{len(rules.files)} file{'s' if len(rules.files) != 1 else ''}", file=sys.stderr)
    print(visible(rules.text))  # a product's rules come from its repository: shown, never obeyed
    return 0


# --- memory ---------------------------------------------------------------------------------------


def _with_memory(config: FactoryConfig, fn: Callable[[Memory], Awaitable[object]]) -> object:
    return with_store(config, lambda store: fn(Memory(store, fade_days=config.memory.fade_days)))


def _lesson_line(lesson: Lesson, now: float, fade_days: float) -> str:
    flags = [f for f, on in (("pinned", lesson.pinned), ("faded", lesson.faded(now, fade_days)),
                             ("deleted", lesson.deleted),
                             (f"superseded by L{lesson.superseded_by}", lesson.superseded_by is not None)) if on]
    scope = lesson.product or "global"
    text = " ".join(lesson.text.split())
    return visible_line(f"L{lesson.id:<5} {scope:<10} {lesson.source:<28} "
                        f"{'[' + ', '.join(flags) + '] ' if flags else ''}{text[:200]}")


def _print_lessons(lessons: list[Lesson], as_json: bool, memory: Memory) -> None:
    if as_json:
        print(json.dumps([lesson.as_dict() for lesson in lessons], indent=2))
        return
    now = memory.clock()
    for lesson in lessons:
        print(_lesson_line(lesson, now, memory.fade_days))
    if not lessons:
        print("no lessons", file=sys.stderr)


def _lesson_id(value: str) -> int:
    v = value.strip().upper().lstrip("L")
    if not v.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a lesson id (e.g. L12 or 12)")
    return int(v)


def cmd_memory(args: argparse.Namespace) -> int:
    config = load_factory(args.factory)
    actor = config.factory.human
    action = args.memory_command

    async def act(memory: Memory) -> int:
        if action == "export":
            directory = Path(args.dir) if args.dir else config.memory_path
            for path in await memory.export_markdown(directory):
                print(path)
            return 0
        if action == "import":
            directory = Path(args.dir) if args.dir else config.memory_path
            report = await memory.import_markdown(directory, actor=actor)
            print(f"added {len(report.added)}, updated {len(report.updated)}, unchanged {len(report.unchanged)}, "
                  f"deleted {len(report.deleted)}, skipped {len(report.skipped)}")
            for why in report.skipped:
                print(f"  skipped: {why}", file=sys.stderr)
            return 0
        if action == "search":
            product = "*" if args.product is None else args.product
            _print_lessons(await memory.search(args.query, product=product, limit=args.limit), args.json, memory)
            return 0
        if action == "list":
            product = "*" if args.product is None else (None if args.product == "global" else args.product)
            _print_lessons(await memory.lessons(product=product, include_deleted=args.deleted), args.json, memory)
            return 0
        if action == "remember":
            result = await memory.remember(args.text, tags=args.tags, product=args.product, role=args.role,
                                           source_task=args.task, actor=actor, source_commit=args.commit)
            if result.action == "refused":
                raise Refused(result.message)
            print(f"L{result.lesson_id} {result.action}: {result.message}")
            return 0
        if action == "edit":
            if args.text is None and args.tags is None:
                raise Refused("give --text and/or --tags")
            lesson = await memory.edit(args.id, actor=actor, text=args.text, tags=args.tags)
        elif action in ("pin", "unpin"):
            lesson = await memory.pin(args.id, actor=actor, pinned=action == "pin")
        elif action == "delete":
            await memory.delete(args.id, actor=actor)
            print(f"L{args.id} deleted: it leaves recall, and neither it nor a near-duplicate comes back "
                  f"(`cockpit memory restore L{args.id}` undoes it)")
            return 0
        elif action == "restore":
            lesson = await memory.restore(args.id, actor=actor)
        elif action == "supersede":
            await memory.supersede(args.old, args.new, actor=actor)
            print(f"L{args.old} superseded by L{args.new}")
            return 0
        else:  # pragma: no cover - argparse only allows the actions above
            raise Refused(f"unknown memory action {action!r}")
        print(_lesson_line(lesson, memory.clock(), memory.fade_days))
        return 0

    return int(_with_memory(config, act))  # type: ignore[arg-type]


def register(sub: argparse._SubParsersAction, factory_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    r = sub.add_parser("rules", help="check the rule files, or show what a role is given on a product")
    rsub = r.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    c = rsub.add_parser("check", help="validate every rule file (exit 2 naming file:line on an error)")
    factory_arg(c)
    c.add_argument("--dir", help="check this rules directory alone, without a factory.toml")
    c.set_defaults(func=cmd_rules_check)
    s = rsub.add_parser("show", help="print the effective rules for a role on a product")
    factory_arg(s)
    s.add_argument("--role", required=True, choices=sorted(ROLE_TOOLS))
    s.add_argument("--product", help="a product of the factory (default: the factory's rules alone)")
    s.add_argument("--json", action="store_true", help="machine-readable output, with the hash and the files")
    s.set_defaults(func=cmd_rules_show)

    m = sub.add_parser("memory", help="the lessons agents learned: export, import, search, tend")
    msub = m.add_subparsers(dest="memory_command", metavar="ACTION", required=True)
    for name, helptext in (("export", "write the lessons as markdown, one file per product (git-friendly)"),
                           ("import", "read exported markdown back (deleted lessons stay deleted)")):
        e = msub.add_parser(name, help=helptext)
        factory_arg(e)
        e.add_argument("--dir", help="default: the factory's memory dir ([memory] dir)")
        e.set_defaults(func=cmd_memory)
    q = msub.add_parser("search", help="lessons matching a query, best first (bm25)")
    factory_arg(q)
    q.add_argument("query")
    q.add_argument("--product", help="this product's lessons and the global ones")
    q.add_argument("--limit", type=int, default=20)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_memory)
    ls = msub.add_parser("list", help="every lesson, by id")
    factory_arg(ls)
    ls.add_argument("--product", help="one product's lessons ('global' for the global ones)")
    ls.add_argument("--deleted", action="store_true", help="include deleted lessons (tombstones)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_memory)
    rm = msub.add_parser("remember", help="write a lesson yourself (a human's lesson: only a human changes it)")
    factory_arg(rm)
    rm.add_argument("text")
    rm.add_argument("--task", required=True, help="the task that taught it (no unsourced lesson)")
    rm.add_argument("--commit", help="the commit it is about")
    rm.add_argument("--product", help="the product it is for (default: every product)")
    rm.add_argument("--role", choices=sorted(ROLE_TOOLS), help="the role it is for (default: every role)")
    rm.add_argument("--tags", help="comma-separated")
    rm.set_defaults(func=cmd_memory)
    ed = msub.add_parser("edit", help="change a lesson's text or tags")
    factory_arg(ed)
    ed.add_argument("id", type=_lesson_id)
    ed.add_argument("--text")
    ed.add_argument("--tags", help="comma-separated")
    ed.set_defaults(func=cmd_memory)
    for name, helptext in (("pin", "always recall this lesson on its product; it never fades"),
                           ("unpin", "recall it by relevance again"),
                           ("delete", "remove a lesson (a tombstone: it leaves recall and is not learned again)"),
                           ("restore", "undo a delete: the lesson is recalled again (recorded as yours)")):
        x = msub.add_parser(name, help=helptext)
        factory_arg(x)
        x.add_argument("id", type=_lesson_id)
        x.set_defaults(func=cmd_memory)
    sp = msub.add_parser("supersede", help="OLD is replaced by NEW: OLD is no longer recalled")
    factory_arg(sp)
    sp.add_argument("old", type=_lesson_id)
    sp.add_argument("new", type=_lesson_id)
    sp.set_defaults(func=cmd_memory)


__all__ = ["register", "cmd_rules_check", "cmd_rules_show", "cmd_memory"]
