"""The seccomp filter every sandboxed command runs under: the kernel refuses what no mount or size bounds.

Two ways around the sandbox's memory bounds (docs/security.md 3g) do not go through any tmpfs of its view:
SysV shared memory and message queues live in the kernel's own memory, sized by the IPC namespace's defaults
(practically unbounded), mapped by no process once the writer detaches, so the OOM killer cannot free them by
killing it (adversary D-05); and a nested user namespace gives a command every capability over a mount
namespace of its own, where it can mount a fresh tmpfs the kernel sizes at half the RAM (adversary D-04).

The filter is classic BPF, assembled here: it is about twenty instructions, bubblewrap loads it (`--seccomp
FD`, with no_new_privs) just before it starts the command, and a library for it (libseccomp) is a C package
with no wheel. It answers EPERM to `shmget`, `msgget`, `unshare` and `clone` asking for a new user
namespace; ENOSYS to `clone3` (its flags lie in memory a filter cannot read; the C library then falls back
to `clone`, which is checked); EPERM to every call of another ABI (x32, 32-bit compat), whose numbers differ.
POSIX shared memory (/dev/shm, sized) and semaphores stay.
"""

from __future__ import annotations

import os
import struct

# linux/filter.h, linux/seccomp.h
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_EPERM, _ENOSYS = 1, 38
# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6] (args[0]'s low word at 16
# on a little-endian machine)
_NR, _ARCH, _ARG0_LOW = 0, 4, 16
_CLONE_NEWUSER = 0x10000000


class _Abi:
    def __init__(self, arch: int, refused: dict[str, int], clone: int, unshare: int, clone3: int,
                 foreign_bit: int | None = None) -> None:
        self.arch, self.refused, self.clone, self.unshare, self.clone3 = arch, refused, clone, unshare, clone3
        self.foreign_bit = foreign_bit  # x32's calls come with this bit set in the number, under x86-64's arch


_ABIS = {
    "x86_64": _Abi(0xC000003E, {"shmget": 29, "msgget": 68}, clone=56, unshare=272, clone3=435,
                   foreign_bit=0x40000000),
    "aarch64": _Abi(0xC00000B7, {"shmget": 194, "msgget": 186}, clone=220, unshare=97, clone3=435),
}


def supported() -> bool:
    """Whether this machine's ABI has a filter (x86-64, arm64): elsewhere commands run without one."""
    return os.uname().machine in _ABIS


def program(machine: str | None = None) -> bytes:
    """The filter as bubblewrap reads it: an array of `struct sock_filter` (u16 code, u8 jt, u8 jf, u32 k)."""
    abi = _ABIS[machine or os.uname().machine]
    ops: list[tuple[int, int, int, int]] = []

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> None:
        ops.append((code, jt, jf, k))

    # Jumps are relative and forward only: the returns sit at the end, and each jump is laid out once their
    # positions are known. A jump's kind names where it goes when its test holds (else: the next op).
    jumps: list[tuple[int, str]] = []

    def jump(code: int, k: int, to: str) -> None:
        jumps.append((len(ops), to))
        op(code, k)

    op(_LD_W_ABS, _ARCH)
    jump(_JEQ_K, abi.arch, "next-else-deny")  # another ABI's numbers mean other calls: refused outright
    op(_LD_W_ABS, _NR)
    if abi.foreign_bit is not None:
        jump(_JGE_K, abi.foreign_bit, "deny")
    for nr in abi.refused.values():
        jump(_JEQ_K, nr, "deny")
    jump(_JEQ_K, abi.clone3, "nosys")
    jump(_JEQ_K, abi.clone, "flags")
    jump(_JEQ_K, abi.unshare, "flags")
    op(_RET_K, _ALLOW)
    at = {"flags": len(ops)}
    op(_LD_W_ABS, _ARG0_LOW)
    jump(_JSET_K, _CLONE_NEWUSER, "deny")
    op(_RET_K, _ALLOW)
    at["deny"] = len(ops)
    op(_RET_K, _ERRNO | _EPERM)
    at["nosys"] = len(ops)
    op(_RET_K, _ERRNO | _ENOSYS)

    for i, to in jumps:
        code, _, _, k = ops[i]
        gap = at["deny" if to == "next-else-deny" else to] - i - 1
        assert 0 <= gap < 256, "a jump too far for one byte"
        ops[i] = (code, 0, gap, k) if to == "next-else-deny" else (code, gap, 0, k)
    return b"".join(struct.pack("=HBBI", *o) for o in ops)


def readable_fd(machine: str | None = None) -> int:
    """A pipe's read end holding the program (bubblewrap reads it to its end): the caller passes and closes it."""
    data = program(machine)
    r, w = os.pipe()
    try:
        os.write(w, data)  # a few hundred bytes: within a pipe's buffer, never blocks
    finally:
        os.close(w)
    return r
