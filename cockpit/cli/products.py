"""`cockpit product add|list|remove`: check a repository and its test command, then edit factory.toml."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from ..config import FactoryConfig, load_factory
from ..domain.tasks import OPEN_STATES
from ..domain.visible import visible
from ..factory.products import (
    PRODUCT_NAME,
    ProductError,
    add_toolchains,
    append_product,
    diagnose_failure,
    product_entry,
    remove_product,
    check_repo,
    describe_result,
    detect_toolchains,
    edit_factory,
    factory_sandbox,
    guess_test_commands,
    probe_tests,
    task_counts,
)
from ..factory.workspaces import GitError
from ..host.disk_reserve import DiskLow
from ..host.sandbox import SandboxUnavailable


def _default_name(repo: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", repo.name).lstrip("-_.")[:64]
    return name or "product"


def _rel_to_factory(config: FactoryConfig, repo: Path) -> str:
    try:
        return repo.relative_to(config.root).as_posix() or "."
    except ValueError:
        return str(repo)


def _ask(question: str, default: bool) -> bool:
    print(f"{question} [{'Y/n' if default else 'y/N'}] ", end="", flush=True)
    try:
        answer = input().strip().lower()
    except EOFError:
        print()
        return False  # no one to answer: never assume yes
    return default if not answer else answer in ("y", "yes")


def _fail(msg: str) -> int:
    print(f"cockpit: {msg}", file=sys.stderr)
    return 1


def cmd_add(args: argparse.Namespace) -> int:
    config = load_factory(args.factory)
    name = args.name or _default_name(Path(args.path).expanduser().resolve())
    if not PRODUCT_NAME.fullmatch(name):
        return _fail(f"product name {name!r}: use letters, digits, '.', '_' or '-' (give --name)")
    if any(p.name == name for p in config.products):
        return _fail(f"a product named {name!r} is already in {config.path}: give another --name, "
                     f"or 'cockpit product remove {name}' first")
    if args.budget is not None and args.budget < 0:
        return _fail("--budget must be zero or more (USD)")
    try:
        repo = asyncio.run(check_repo(Path(args.path), args.branch))
    except ProductError as e:
        return _fail(str(e))
    for p in config.products:
        if config.resolve(p.path).resolve() == repo.path:
            return _fail(f"{repo.path} is already the product {p.name!r} in {config.path}")

    if args.test:
        command, why = args.test, "given with --test"
    else:
        guesses = asyncio.run(guess_test_commands(repo.path, repo.branch))
        if not guesses:
            return _fail(f"cannot guess how to run the tests of {repo.path} (looked for pytest, package.json, "
                         "Cargo.toml, go.mod, a Makefile test target): give --test \"COMMAND\"")
        command, why = guesses[0].command, guesses[0].reason
        for g in guesses[1:]:
            print(f"  (also possible: {g.command}  # {g.reason})")

    print(f"product {name}: {repo.path}, branch {repo.branch} at {repo.head[:12]}")
    print(f"test command: {command}  ({why})")
    refused: list[tuple[str, str]] = []
    toolchains = [t for t in detect_toolchains(command, factory_sandbox(config), refused)
                  if t not in config.factory.toolchains]
    for where, why in refused:
        print(f"  not shown to the sandbox: {where} {why}; move the program into a directory of its own "
              "(e.g. ~/.local/share/<tool>/) and name that in [factory] toolchains")
    if toolchains:
        print(f"toolchains the sandbox will show read-only ([factory] toolchains): {', '.join(toolchains)}")
        config = edit_factory(config.path, lambda doc: add_toolchains(doc, toolchains))
    if not args.no_run:
        print(f"running it once on a fresh worktree of {repo.branch}, in the sandbox, as the tests gate will...",
              flush=True)
        try:
            result = asyncio.run(probe_tests(config, repo.path, repo.branch, command))
        except SandboxUnavailable as e:
            return _fail(f"{e}\n(or add the product without running its tests: --no-run)")
        except DiskLow as e:
            return _fail(f"{e}\n(or add the product without running its tests: --no-run)")
        except GitError as e:
            return _fail(f"could not make a scratch worktree: {e}")
        diagnosis = None if result.ok else asyncio.run(diagnose_failure(result, command, repo))
        if diagnosis is not None and diagnosis.error:
            # the first collection error, whole (pytest's tail says "13 errors" without the cause), then the tail
            print(f"  {visible(describe_result(result, tail_lines=3))}")  # the repo's output
            print("  the first error, whole:\n    " + visible(diagnosis.error).replace("\n", "\n    "))
        else:
            print(f"  {visible(describe_result(result, tail_lines=3 if result.ok else 15))}")  # the repo's output
        if not result.ok:
            suggestion = ""
            if diagnosis is not None:
                for line in map(visible, diagnosis.advice()):  # names a module from the repo's output
                    print(f"  likely fix: {line}" if not line.startswith("  ") else f"  {line}")
                if diagnosis.fixed_command and not args.test:
                    fixed = asyncio.run(probe_tests(config, repo.path, repo.branch, diagnosis.fixed_command))
                    verdict = "passes" if fixed.ok else "fails too"
                    print(f"  tried it: '{diagnosis.fixed_command}' {verdict} ({describe_result(fixed, tail_lines=0)})")
                    if fixed.ok:
                        suggestion = (f"\n  cockpit product add {repo.path} --test \"{diagnosis.fixed_command}\""
                                      f" --factory {config.path}")
                        if not args.yes and _ask(f"Use '{diagnosis.fixed_command}' as the test command?", True):
                            command, result = diagnosis.fixed_command, fixed
            if not result.ok and (args.yes or not _ask("The tests do not pass on the branch: every task's tests gate "
                                                       "would fail. Add it anyway?", False)):
                return _fail(f"not added: '{command}' does not pass on {repo.branch}. Fix the branch or give the right "
                             f"--test (--no-run skips this check).{suggestion}")
        elif not args.yes and not _ask(f"Add product {name!r} with this test command?", True):
            return _fail("not added")
    elif not args.yes and not _ask(f"Add product {name!r} without running its tests?", True):
        return _fail("not added")

    entry = product_entry(name, _rel_to_factory(config, repo.path), command, repo.branch, args.budget)
    edit_factory(config.path, lambda doc: append_product(doc, entry))
    print(f"added product {name} to {config.path}")
    print(f"next: cockpit task add {name} \"TITLE\" --factory {config.path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    config = load_factory(args.factory)
    counts = task_counts(config)
    rows = []
    for p in config.products:
        tasks = counts.get(p.name, {})
        rows.append({"name": p.name, "path": str(config.resolve(p.path)), "main_branch": p.main_branch,
                     "test_command": p.test_command, "budget_usd": p.budget_usd,
                     "tasks": sum(tasks.values()), "configured": True})
    configured = {p.name for p in config.products}
    for name, tasks in sorted(counts.items()):
        if name not in configured:
            rows.append({"name": name, "path": None, "main_branch": None, "test_command": None, "budget_usd": None,
                         "tasks": sum(tasks.values()), "configured": False})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no products in {config.path}: add one with 'cockpit product add PATH'")
        return 0
    for r in rows:
        if r["configured"]:
            budget = "" if r["budget_usd"] is None else f"  budget ${r['budget_usd']:g}"
            print(f"{r['name']:<16} {r['path']}  ({r['main_branch']})  test: {r['test_command']}  "
                  f"tasks: {r['tasks']}{budget}")
        else:
            print(f"{r['name']:<16} (removed from factory.toml; {r['tasks']} tasks kept in the store)")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    config = load_factory(args.factory)
    names = [p.name for p in config.products]
    if args.name not in names:
        return _fail(f"no product {args.name!r} in {config.path} (products: {', '.join(names) or 'none'})")
    edit_factory(config.path, lambda doc: remove_product(doc, args.name))
    tasks = task_counts(config).get(args.name, {})
    print(f"removed product {args.name} from {config.path}")
    if tasks:
        open_ = {s: n for s, n in tasks.items() if s in OPEN_STATES}
        print(f"its {sum(tasks.values())} tasks stay in the store (cockpit status shows them)"
              + (f"; open ones ({', '.join(f'{n} {s}' for s, n in sorted(open_.items()))}) are no longer driven"
                 if open_ else ""))
    return 0


def register(sub: argparse._SubParsersAction, factory_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("product", help="add, list or remove the factory's products (git repositories)")
    psub = p.add_subparsers(dest="product_command", metavar="ACTION", required=True)

    a = psub.add_parser("add", help="check a git repository and its test command, then add it to factory.toml")
    factory_arg(a)
    a.add_argument("path", help="the repository's top-level directory")
    a.add_argument("--name", help="product name (default: the directory's name)")
    a.add_argument("--test", help="the command that runs its tests (default: guessed from the repository)")
    a.add_argument("--branch", help="the branch work merges into (default: main, else the checked-out branch)")
    a.add_argument("--budget", type=float, help="the product's budget in USD")
    a.add_argument("--yes", "-y", action="store_true", help="ask nothing (a failing test run still refuses)")
    a.add_argument("--no-run", action="store_true", help="do not run the test command to check it")
    a.set_defaults(func=cmd_add)

    lst = psub.add_parser("list", help="the products in factory.toml, and removed ones the store remembers")
    factory_arg(lst)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_list)

    r = psub.add_parser("remove", help="remove a product from factory.toml (its history stays in the store)")
    factory_arg(r)
    r.add_argument("name")
    r.set_defaults(func=cmd_remove)
