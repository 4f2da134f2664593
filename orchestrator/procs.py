"""Facts about host processes read from /proc.

A pid alone can be reused; a pid with its start time (clock ticks since boot)
names one process for good, which is how records tell a live owner from a
dead one.
"""

from __future__ import annotations


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> str | None:
    """The process's start time, or None when there is no such process."""
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def is_running(pid: int | str) -> bool:
    """The process exists and has not exited (a zombie has)."""
    fields = _stat_fields(pid)
    return fields is not None and bool(fields) and fields[0] != "Z"
