"""The fixtures several test modules share, in one place: pytest finds them here without an import
(an imported fixture shadowed by the test's argument of the same name is what ruff's F811 reports).

A module that defines a fixture of the same name uses its own.
"""

import os

# the store's full-disk reserve (cockpit.store.store.BALLAST_BYTES), small: the suite makes hundreds of
# factories, and pytest keeps the last runs' temp dirs (16 MB each filled 7 GB); set before any import of the
# store, and inherited by the cockpit processes the tests start. tests/test_store_full_disk.py sets its own.
os.environ.setdefault("COCKPIT_STORE_RESERVE_BYTES", str(256 << 10))

from gate_kit import gate, repo  # noqa: E402
from gitrepo import host_tmp  # noqa: E402
from tui_kit import config, store  # noqa: E402

__all__ = ["config", "gate", "host_tmp", "repo", "store"]
