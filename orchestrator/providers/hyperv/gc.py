"""Garbage collector: remove VMs and VM folders we left behind after a crash.

Ownership is proven twice before anything is deleted: the VM's name has our
prefix *and* its Notes start with our marker (folders: the prefix, under our
own ``vm_root``). Whatever a live job, a booting VM or the warm pool owns is
protected. One control plane per (host, ``vm_prefix``): a second orchestrator
sharing both would look like garbage to this one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import PureWindowsPath

from orchestrator.providers.base import TeardownReport
from orchestrator.providers.hyperv import steps
from orchestrator.providers.hyperv.config import HyperVSettings
from orchestrator.providers.hyperv.host import Host
from orchestrator.providers.hyperv.plan import owner_from_notes

log = logging.getLogger(__name__)

Teardown = Callable[[str, list[str]], TeardownReport]


def find_orphans(settings: HyperVSettings, reply: dict[str, object], protected: set[str]) -> list[str]:
    """Names (VMs or folders) that carry our marker and that nothing live owns. Pure."""
    valid = re.compile(re.escape(settings.vm_prefix) + r"[A-Za-z0-9-]{1,80}")
    protected = {name.lower() for name in protected}  # Windows names are case-insensitive
    orphans: list[str] = []
    vms = reply.get("vms") or []
    for entry in vms if isinstance(vms, list) else [vms]:
        if not isinstance(entry, dict):
            continue
        name, notes = str(entry.get("name", "")), str(entry.get("notes", ""))
        if valid.fullmatch(name) and owner_from_notes(notes) is not None and name.lower() not in protected:
            orphans.append(name)
    seen = {name.lower() for name in orphans}
    unmarked = reply.get("unmarked") or []
    seen |= {str(name).lower() for name in (unmarked if isinstance(unmarked, list) else [unmarked])}
    dirs = reply.get("dirs") or []
    for raw in dirs if isinstance(dirs, list) else [dirs]:
        name = str(raw)
        if valid.fullmatch(name) and name.lower() not in protected and name.lower() not in seen:
            orphans.append(name)
    return orphans


def collect_garbage(settings: HyperVSettings, host: Host, protected: set[str], teardown: Teardown) -> list[str]:
    """Tear down every orphan; return the names removed cleanly."""
    reply = host.run(steps.gc_list(settings))
    removed: list[str] = []
    for name in find_orphans(settings, reply, protected):
        folder = str(PureWindowsPath(settings.vm_root) / name)
        report = teardown(name, [folder])
        if report.clean:
            removed.append(name)
        else:
            log.warning("garbage collector could not remove %s: %s", name, report.leftovers)
    if removed:
        log.info("garbage collector removed %d orphan(s): %s", len(removed), ", ".join(removed))
    return removed
