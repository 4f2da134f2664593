"""Host uids for sandboxes started as root.

As root, a sandbox never runs as host root: bubblewrap is started as a uid
taken from a reserved range, one per live sandbox, so RLIMIT_NPROC counts only
that sandbox's processes and nothing it does is done as the host's root. Slots
are held with ``flock`` so separate orchestrator processes never share one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class UidLease:
    uid: int
    fd: int

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1


class UidPool:
    def __init__(self, directory: Path, base: int, count: int):
        self.directory = directory
        self.base = base
        self.count = count
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _try(self, slot: int) -> UidLease | None:
        fd = os.open(self.directory / f"{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return UidLease(self.base + slot, fd)

    def acquire(self, hint: int = 0) -> UidLease:
        for offset in range(self.count):
            lease = self._try((hint + offset) % self.count)
            if lease is not None:
                return lease
        raise RuntimeError(f"all {self.count} sandbox uids are in use")

    def try_acquire_uid(self, uid: int) -> UidLease | None:
        """The lease on one given uid, if nobody holds it (crash recovery must not touch a live sandbox)."""
        if not self.base <= uid < self.base + self.count:
            return None
        return self._try(uid - self.base)
