"""A seccomp-BPF deny list compiled in pure Python (no libseccomp needed).

The filter is loaded by bubblewrap (``--seccomp FD``) just before the job's
program is executed. It refuses, with EPERM, the system calls a job never
needs and that widen the kernel attack surface; it kills any process that
makes a system call through a foreign ABI (i386 or x32 on x86_64), which would
otherwise bypass a filter written for native numbers.
"""

from __future__ import annotations

import errno
import platform
import struct
from functools import cache

# Classic BPF opcodes used here.
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_RET_KILL_PROCESS = 0x80000000
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000

_OFF_NR = 0
_OFF_ARCH = 4


def _arg_low(index: int) -> int:
    return 16 + 8 * index  # little-endian: the low 32 bits come first


_NAMESPACE_FLAGS = 0x7E020080  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "unshare", "setns",
    "swapon", "swapoff", "reboot", "sethostname", "setdomainname", "acct", "quotactl",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "bpf", "perf_event_open", "userfaultfd", "fanotify_init", "lookup_dcookie",
    "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "open_by_handle_at", "name_to_handle_at",
    "syslog", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "vhangup",
    "move_pages", "migrate_pages",
)  # fmt: skip

_X86_64 = {
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "move_mount": 429, "open_tree": 428,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "unshare": 272, "setns": 308, "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170,
    "setdomainname": 171, "acct": 163, "quotactl": 179, "init_module": 175, "finit_module": 313,
    "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320, "bpf": 321, "perf_event_open": 298,
    "userfaultfd": 323, "fanotify_init": 300, "lookup_dcookie": 212, "keyctl": 250, "add_key": 248,
    "request_key": 249, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_by_handle_at": 304, "name_to_handle_at": 303, "syslog": 103, "settimeofday": 164,
    "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159, "vhangup": 153, "move_pages": 279,
    "migrate_pages": 256, "clone": 56, "clone3": 435, "ioctl": 16, "iopl": 172, "ioperm": 173,
    "uselib": 134, "_sysctl": 156,
}  # fmt: skip

_AARCH64 = {
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "pidfd_getfd": 438,
    "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "move_mount": 429, "open_tree": 428,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "unshare": 97, "setns": 268, "swapon": 224, "swapoff": 225, "reboot": 142, "sethostname": 161,
    "setdomainname": 162, "acct": 89, "quotactl": 60, "init_module": 105, "finit_module": 273,
    "delete_module": 106, "kexec_load": 104, "kexec_file_load": 294, "bpf": 280, "perf_event_open": 241,
    "userfaultfd": 282, "fanotify_init": 262, "lookup_dcookie": 18, "keyctl": 219, "add_key": 217,
    "request_key": 218, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_by_handle_at": 265, "name_to_handle_at": 264, "syslog": 116, "settimeofday": 170,
    "clock_settime": 112, "clock_adjtime": 266, "adjtimex": 171, "vhangup": 58, "move_pages": 239,
    "migrate_pages": 238, "clone": 220, "clone3": 435, "ioctl": 29,
}  # fmt: skip

_ARCHES = {
    "x86_64": (0xC000003E, _X86_64, ("iopl", "ioperm", "uselib", "_sysctl")),
    "aarch64": (0xC00000B7, _AARCH64, ()),
}


class UnsupportedArchitecture(RuntimeError):
    pass


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


@cache
def compile_filter(machine: str | None = None, allow: frozenset[str] = frozenset()) -> bytes:
    """The filter for this machine's architecture as raw ``struct sock_filter`` bytes.

    ``allow`` names denied calls to let through: only for the warm interpreter's outer
    sandbox (``warm.py``), whose programs load the full filter on top of it.
    """
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise UnsupportedArchitecture(f"no seccomp table for {machine}")
    audit_arch, table, extra = _ARCHES[machine]
    eperm = _RET_ERRNO | errno.EPERM
    prog = [
        _insn(_LD_W_ABS, _OFF_ARCH),
        _insn(_JEQ_K, audit_arch, jt=1, jf=0),
        _insn(_RET_K, _RET_KILL_PROCESS),
        _insn(_LD_W_ABS, _OFF_NR),
    ]
    if machine == "x86_64":
        # x32 system calls share the architecture tag but set bit 30 of the number.
        prog += [_insn(_JGE_K, 0x40000000, jt=0, jf=1), _insn(_RET_K, _RET_KILL_PROCESS)]
    for name in (*DENIED, *extra):
        if name in allow:
            continue
        prog += [_insn(_JEQ_K, table[name], jt=0, jf=1), _insn(_RET_K, eperm)]
    # clone3 passes flags in memory a filter cannot read: answer ENOSYS so libc falls back to clone.
    prog += [_insn(_JEQ_K, table["clone3"], jt=0, jf=1), _insn(_RET_K, _RET_ERRNO | errno.ENOSYS)]
    # clone: refuse any namespace flag.
    prog += [
        _insn(_JEQ_K, table["clone"], jt=0, jf=3),
        _insn(_LD_W_ABS, _arg_low(0)),
        _insn(_JSET_K, _NAMESPACE_FLAGS, jt=0, jf=1),
        _insn(_RET_K, eperm),
        _insn(_LD_W_ABS, _OFF_NR),
    ]
    # ioctl: refuse terminal input injection.
    prog += [
        _insn(_JEQ_K, table["ioctl"], jt=0, jf=5),
        _insn(_LD_W_ABS, _arg_low(1)),
        _insn(_JEQ_K, _TIOCSTI, jt=2, jf=0),
        _insn(_JEQ_K, _TIOCLINUX, jt=1, jf=0),
        _insn(_RET_K, _RET_ALLOW),
        _insn(_RET_K, eperm),
    ]
    prog.append(_insn(_RET_K, _RET_ALLOW))
    return b"".join(prog)
