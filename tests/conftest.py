"""The fixtures several test modules share, in one place: pytest finds them here without an import
(an imported fixture shadowed by the test's argument of the same name is what ruff's F811 reports).

A module that defines a fixture of the same name uses its own.
"""

from gate_kit import gate, repo
from gitrepo import host_tmp
from tui_kit import config, store

__all__ = ["config", "gate", "host_tmp", "repo", "store"]
