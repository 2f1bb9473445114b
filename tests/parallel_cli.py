"""Run many `cockpit ...` commands at once, each in its own process, and report how each ended.

`python tests/parallel_cli.py ARGV_JSON_FILE` reads a JSON list of argument lists, imports the cockpit's CLI
once, then forks one child per command, all started before any is waited for: each child is a real process
with its own connections to the store, running `cockpit.cli.main(argv)` exactly as `cockpit ...` would, only
without paying the interpreter's start-up 100 times on a 2-core machine. Prints a JSON list of
{"rc", "out", "err"} in the order given.

Run as a script (not imported into pytest): a process that has started threads must not fork.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback


def main() -> int:
    with open(sys.argv[1]) as f:
        argvs: list[list[str]] = json.load(f)
    import cockpit.cli  # the expensive imports, once, before any fork

    outdir = tempfile.mkdtemp(prefix="cockpit-parallel-")
    pids = []
    for i, argv in enumerate(argvs):
        pid = os.fork()
        if pid == 0:  # the child: one command, then out
            rc = 99
            try:
                out = os.open(f"{outdir}/{i}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                err = os.open(f"{outdir}/{i}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(out, 1)
                os.dup2(err, 2)
                rc = cockpit.cli.main(argv)
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(rc)
        pids.append(pid)
    results = []
    for i, pid in enumerate(pids):
        _, status = os.waitpid(pid, 0)
        with open(f"{outdir}/{i}.out") as o, open(f"{outdir}/{i}.err") as e:
            results.append({"rc": os.waitstatus_to_exitcode(status), "out": o.read(), "err": e.read()})
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
