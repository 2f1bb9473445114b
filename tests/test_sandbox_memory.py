"""A sandboxed command may not take the host's memory through a tmpfs of its own view.

Every tmpfs bubblewrap mounts is memory, and the kernel sizes each at half the RAM: a builder's `head -c 10G
/dev/zero > /tmp/x` in a few commands at once (or a test the gate runs) would take the host's memory from the
cockpit and everything else. The attack writes more than its bound into each writable tmpfs of the view (/tmp,
/dev/shm, /dev itself, /run, an empty dir that hides a path); with the bounds it is refused ("No space left"
or a read-only /dev) and keeps at most its bound. Liveness: with the bounds switched off (`tmp_bytes = None`)
the same command writes all of it. Real bwrap, real tmpfs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cockpit.config import load_factory
from cockpit.factory.products import factory_sandbox
from cockpit.host.sandbox import HIDING_BYTES, RUN_BYTES, SHM_BYTES, Sandbox
from factory_kit import write_factory

MB = 1 << 20
pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")  # `make test` installs it


def fill(path: str, mb: int) -> str:
    """Write `mb` MB to `path` in the sandbox; print how many bytes stand there after."""
    return (f"head -c {mb * MB} /dev/zero > {path}; echo \"rc=$?\"; "
            f"echo \"size=$(stat -c %s {path} 2>/dev/null || echo 0)\"")


def size_of(output: str) -> int:
    return int(output.rsplit("size=", 1)[1].split()[0])


async def run(box: Sandbox, command: str, cwd: Path) -> str:
    res = await box.run(command, cwd=cwd, writable=[cwd], timeout_s=60, output_cap_bytes=8000)
    return res.output


@pytest.mark.parametrize("path, bound, mb", [
    ("/tmp/x", 8 * MB, 24),                        # the command's own /tmp: tmp_bytes (8 MiB in this test)
    ("/tmp/home/x", 8 * MB, 24),                   # its HOME lies in /tmp: the same bound
    ("/dev/shm/x", SHM_BYTES, SHM_BYTES // MB + 16),
    ("/run/x", RUN_BYTES, 8),
])
async def test_a_write_past_a_tmpfs_bound_is_refused_and_keeps_at_most_the_bound(tmp_path, path, bound, mb):
    box = Sandbox("bwrap")
    box.tmp_bytes = 8 * MB
    out = await run(box, fill(path, mb), tmp_path)
    assert "No space left on device" in out and "rc=1" in out, out
    assert 0 < size_of(out) <= bound, out

    box.tmp_bytes = None  # liveness: unbounded, the kernel's default of half the RAM
    out = await run(box, fill(path, mb), tmp_path)
    assert "rc=0" in out and size_of(out) == mb * MB, out


async def test_dev_is_read_only(tmp_path):
    box = Sandbox("bwrap")
    out = await run(box, fill("/dev/cockpit-x", 4), tmp_path)
    assert "Read-only file system" in out and size_of(out) == 0, out
    # its nodes still work: what a command needs of /dev
    out = await run(box, "echo ok > /dev/null && head -c 4 /dev/urandom | wc -c", tmp_path)
    assert out.split() == ["4"], out

    box.tmp_bytes = None
    out = await run(box, fill("/dev/cockpit-x", 4), tmp_path)
    assert "rc=0" in out and size_of(out) == 4 * MB, out


async def test_the_empty_dir_that_hides_a_path_holds_next_to_nothing(tmp_path):
    tool = tmp_path / "toolchain"
    (tool / "secrets").mkdir(parents=True)
    (tool / "secrets" / "token").write_text("s3cret\n")
    work = tmp_path / "work"
    work.mkdir()
    box = Sandbox("bwrap", toolchains=[tool], hidden=[tool / "secrets"])
    out = await run(box, f"cat {tool}/secrets/token; " + fill(f"{tool}/secrets/x", 4), work)
    assert "s3cret" not in out and "No space left on device" in out, out
    assert size_of(out) <= HIDING_BYTES, out

    box.tmp_bytes = None
    out = await run(box, fill(f"{tool}/secrets/x", 4), work)
    assert "s3cret" not in out and size_of(out) == 4 * MB, out


async def test_factory_toml_sets_the_tmp_bound(tmp_path):
    toml = write_factory(tmp_path / "f", limits={"tmp_bytes": 2 * MB})
    box = factory_sandbox(load_factory(toml))
    assert box.tmp_bytes == 2 * MB
    out = await run(box, fill("/tmp/x", 6), tmp_path)
    assert "No space left on device" in out and 0 < size_of(out) <= 2 * MB, out


def test_a_bound_under_one_mib_is_refused_with_the_file_and_line(tmp_path):
    toml = write_factory(tmp_path / "f", limits={"tmp_bytes": 4096})
    with pytest.raises(Exception) as err:
        load_factory(toml)
    assert "tmp_bytes" in str(err.value) and "factory.toml" in str(err.value)
