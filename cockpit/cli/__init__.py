"""The command line: `cockpit ...` and `python -m cockpit ...` (the console script is `cockpit.cli:main`).

One module per command family; each registers its subcommands on the parser built in `main.py`.
Nothing else under cockpit/ imports this package: commands sit on top of the engine, never inside it.
"""

from .main import EXIT_ALL_DONE, EXIT_STILL_WORKING, EXIT_WAITS_FOR_YOU, QUIT_GRACE_S, _exit_after, build_parser, main

__all__ = ["EXIT_ALL_DONE", "EXIT_STILL_WORKING", "EXIT_WAITS_FOR_YOU", "QUIT_GRACE_S", "_exit_after", "build_parser",
           "main"]
