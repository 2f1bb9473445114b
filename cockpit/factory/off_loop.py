"""Parse what an agent committed without stopping the cockpit: small inputs in a thread, big ones in a process.

`ast.parse` is one C call that holds the GIL: on a 1 MB file it takes seconds (adversary C-04), and a
worker thread does not help, the event loop waits with it. Inputs up to THREAD_BYTES (a parse of
~0.1 s) run in a thread; bigger ones in a child Python (`python -m cockpit.factory.off_loop`), which
takes the pickled call on stdin and gives back the pickled result; it is killed after TIMEOUT_S.
Only functions of this package are called (by name from ALLOWED), on text: the child runs no
agent code (parsing executes nothing).
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
import resource
import sys
import threading
from collections.abc import Callable
from typing import Any

THREAD_BYTES = 64_000
TIMEOUT_S = 60.0
MEMORY_BYTES = 3 << 30
ALLOWED = frozenset({"cockpit.factory.runner_reach:scan", "cockpit.factory.suite_identity:file_tests",
                     "cockpit.factory.suite_identity:_definition", "cockpit.factory.product_names:rebound"})


# CPython 3.11's parser keeps its recursion depth per interpreter: two threads parsing at once can fail with
# "SystemError: AST constructor recursion depth mismatch" (seen once in CI: a reach scan beside another parse)
_PARSING = threading.Lock()


def _one_at_a_time(fn: Callable[..., Any], *args: Any) -> Any:
    with _PARSING:
        return fn(*args)


class TooLong(Exception):
    """The parse took longer than TIMEOUT_S (or its process died): the input cannot be vouched for."""


def _name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args), off the event loop; TooLong if a big input's parse did not finish."""
    size = sum(len(a) for a in args if isinstance(a, (str, bytes)))
    if size <= THREAD_BYTES:
        return await asyncio.to_thread(_one_at_a_time, fn, *args)
    name = _name(fn)
    if name not in ALLOWED:
        raise ValueError(f"off_loop: {name} is not a parser this module runs")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cockpit.factory.off_loop", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, preexec_fn=_limit_memory)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(pickle.dumps((name, args))), TIMEOUT_S)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise TooLong(f"parsing took longer than {TIMEOUT_S:g} s") from None
    finally:
        if proc.returncode is None:
            proc.kill()
    if proc.returncode != 0 or not out:
        raise TooLong(f"the parser process ended with exit code {proc.returncode}")
    return pickle.loads(out)  # our own child's answer


def _limit_memory() -> None:
    """In the child, before it starts: a parse that would eat the machine fails there instead."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def _main() -> None:
    name, args = pickle.loads(sys.stdin.buffer.read())
    if name not in ALLOWED:
        raise SystemExit(2)
    module, _, attr = name.partition(":")
    fn = getattr(importlib.import_module(module), attr)
    sys.stdout.buffer.write(pickle.dumps(fn(*args)))


if __name__ == "__main__":
    _main()
