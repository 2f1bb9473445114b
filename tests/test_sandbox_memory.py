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
import struct
import sys
from pathlib import Path

import pytest

from cockpit.config import load_factory
from cockpit.factory.products import factory_sandbox
from cockpit.host import syscall_filter
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


# -- what no tmpfs bounds: SysV IPC memory and a nested user namespace (syscall_filter) -------------------

IPC_FILL = '''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
n = int(sys.argv[1]) << 20
sid = libc.shmget(0, ctypes.c_size_t(n), 0o1000 | 0o600)  # IPC_PRIVATE, IPC_CREAT
if sid < 0:
    print("shmget refused:", os.strerror(ctypes.get_errno()))
else:
    p = libc.shmat(sid, None, 0)
    ctypes.memset(p, 1, n)
    libc.shmdt(ctypes.c_void_p(p))  # mapped by no process from here on
    print("segment filled")
qid = libc.msgget(0, 0o1000 | 0o600)
print("msgget refused:", os.strerror(ctypes.get_errno()) if qid < 0 else "no")
'''


@pytest.mark.skipif(not syscall_filter.supported(), reason="the filter knows x86-64 and arm64 only")
async def test_sysv_shared_memory_past_the_tmp_bound_is_refused(tmp_path):
    """Adversary D-05: a SysV segment lives in the kernel's unsized memory, past every tmpfs bound, and outlives
    its writer (no process holds it: the OOM killer cannot free it). Liveness: without the filter, 24 MiB stand
    in one segment with /tmp bounded at 8 MiB."""
    (tmp_path / "ipc.py").write_text(IPC_FILL)
    command = f"{sys.executable} ipc.py 24; cat /proc/sysvipc/shm"
    box = Sandbox("bwrap")
    box.tmp_bytes = 8 * MB
    out = await run(box, command, tmp_path)
    assert "shmget refused: Operation not permitted" in out and "msgget refused: Operation not permitted" in out, out
    assert "segment filled" not in out and segment_bytes(out) == [], out

    box.syscall_filter = False
    out = await run(box, command, tmp_path)
    assert "segment filled" in out and "msgget refused: no" in out, out
    assert segment_bytes(out) == [24 * MB], out


def segment_bytes(output: str) -> list[int]:
    """The sizes /proc/sysvipc/shm lists (its header names the columns)."""
    lines = output.split("\n")
    head = next((i for i, line in enumerate(lines) if line.split()[:2] == ["key", "shmid"]), None)
    if head is None:
        return []
    size_at = lines[head].split().index("size")
    return [int(line.split()[size_at]) for line in lines[head + 1:] if line.strip()]


NESTED_MOUNT = '''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000 | 0x00020000) != 0:  # CLONE_NEWUSER | CLONE_NEWNS
    print("unshare refused:", os.strerror(ctypes.get_errno()))
else:
    libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None)  # MS_REC | MS_PRIVATE
    if libc.mount(b"t", b"/tmp", b"tmpfs", 0, None) != 0:
        print("mount refused:", os.strerror(ctypes.get_errno()))
    else:
        st = os.statvfs("/tmp")
        print("nested tmpfs bytes:", st.f_blocks * st.f_frsize)
'''


@pytest.mark.skipif(not syscall_filter.supported(), reason="the filter knows x86-64 and arm64 only")
async def test_a_nested_user_namespace_cannot_mount_an_unbounded_tmpfs(tmp_path):
    """Adversary D-04: in a user namespace of its own a command has every capability over its mounts, and a
    fresh tmpfs there is sized at half the RAM. Liveness: without the filter the mount stands, larger than the
    bound; the `unshare` tool is refused as well."""
    (tmp_path / "nest.py").write_text(NESTED_MOUNT)
    command = f"{sys.executable} nest.py; unshare --user true; echo unshare-rc=$?"
    box = Sandbox("bwrap")
    box.tmp_bytes = 8 * MB
    out = await run(box, command, tmp_path)
    assert "unshare refused: Operation not permitted" in out and "unshare-rc=1" in out, out

    box.syscall_filter = False
    out = await run(box, command, tmp_path)
    assert int(out.split("nested tmpfs bytes:")[1].split()[0]) > 8 * MB and "unshare-rc=0" in out, out


async def test_what_commands_need_still_works_under_the_filter(tmp_path):
    """The filter refuses four calls: child processes (the C library tries clone3 first, then clone), a process
    pool, POSIX shared memory and semaphores still work."""
    (tmp_path / "ok.py").write_text(
        "import multiprocessing, subprocess\n"
        "from multiprocessing import shared_memory\n"
        "def twice(x):\n    return 2 * x\n"
        "if __name__ == '__main__':\n"
        "    print(subprocess.run(['echo', 'child'], capture_output=True, text=True).stdout.strip())\n"
        "    with multiprocessing.Pool(2) as pool:\n        print('pool', pool.map(twice, [1, 2]))\n"
        "    m = shared_memory.SharedMemory(create=True, size=1 << 20); m.close(); m.unlink(); print('posix shm')\n"
        "    lock = multiprocessing.Lock(); lock.acquire(); lock.release(); print('semaphore')\n"
    )
    box = Sandbox("bwrap")
    assert box.syscall_filter == syscall_filter.supported()
    out = await run(box, f"{sys.executable} ok.py && git --version >/dev/null && echo done", tmp_path)
    assert out.split() == ["child", "pool", "[2,", "4]", "posix", "shm", "semaphore", "done"], out


def run_filter(prog: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    """Classic BPF, as the kernel runs a seccomp filter over `struct seccomp_data` (the few ops it uses)."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    ops = [struct.unpack("=HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = ops[pc]
        if code == 0x20:
            acc = struct.unpack_from("=I", data, k)[0]
        elif code in (0x15, 0x35, 0x45):
            taken = acc == k if code == 0x15 else acc >= k if code == 0x35 else bool(acc & k)
            pc += jt if taken else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unknown op {code:#x}")
        pc += 1


@pytest.mark.parametrize("machine, arch, numbers", [
    ("x86_64", 0xC000003E, {"shmget": 29, "msgget": 68, "clone": 56, "unshare": 272, "clone3": 435, "read": 0}),
    ("aarch64", 0xC00000B7, {"shmget": 194, "msgget": 186, "clone": 220, "unshare": 97, "clone3": 435, "read": 63}),
])
def test_the_filter_program_answers_each_call_as_documented(machine, arch, numbers):
    """The parts a live run on this one machine cannot reach: the other ABI's table, x32 and compat calls."""
    allow, eperm, enosys = 0x7FFF0000, 0x00050001, 0x00050026
    prog = syscall_filter.program(machine)
    assert run_filter(prog, numbers["read"], arch) == allow
    assert run_filter(prog, numbers["shmget"], arch) == eperm
    assert run_filter(prog, numbers["msgget"], arch) == eperm
    assert run_filter(prog, numbers["clone3"], arch) == enosys
    for call in ("clone", "unshare"):
        assert run_filter(prog, numbers[call], arch, arg0=0x01200011) == allow  # a fork's flags
        assert run_filter(prog, numbers[call], arch, arg0=0x10000000 | 0x00020000) == eperm  # a new user ns
    assert run_filter(prog, numbers["read"], 0x40000003) == eperm  # i386 compat calls: other numbers
    if machine == "x86_64":
        assert run_filter(prog, 0x40000000 + 29, arch) == eperm  # x32's shmget
