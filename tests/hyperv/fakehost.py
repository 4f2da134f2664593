"""A fake Hyper-V host: a PowerShellTransport that keeps VM and file state.

Each lifecycle script is recognised by its template name and its effect is
simulated on in-memory state, so tests can assert *outcomes* ("nothing is
left on the host") rather than call sequences. Failures are injected per step.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestratorError, TransportError
from orchestrator.windows.scripts import script_name
from orchestrator.windows.transport import PSErrorRecord, PSResult

Failure = OrchestratorError | PSErrorRecord | Callable[[dict[str, Any]], Any]


@dataclass
class FakeVm:
    name: str
    notes: str
    state: str = "Off"
    adapters: int = 1
    dvd: str | None = None
    disks: list[str] = field(default_factory=list)
    probes: int = 0
    cpu_max: int = 100


def _low(path: str) -> str:
    return path.rstrip("\\").lower()


class FakeHyperVHost:
    def __init__(self, *, vm_root: str = r"C:\ProgramData\Orchestrator\vms") -> None:
        self.vm_root = vm_root
        self.vms: dict[str, FakeVm] = {}
        self.files: dict[str, bytes] = {}  # lower-case path -> content
        self.dirs: set[str] = set()
        self.images: set[str] = {r"c:\programdata\orchestrator\images\win2022-v1\base.vhdx"}
        self.saved_exports: set[str] = set()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.scripts: dict[str, str] = {}
        self.failures: dict[str, deque[Failure]] = defaultdict(deque)
        self.ready_after = 2  # probes before PowerShell Direct answers
        self.sticky_nic = False
        self.run_hangs = False
        self.runner_result: dict[str, Any] = {
            "version": 1,
            "exit_code": 0,
            "timed_out": False,
            "error": None,
            "duration_ms": 12,
            "stdout_bytes": 6,
            "stderr_bytes": 0,
            "artifacts": [],
        }
        self.stdout = b"hello\n"
        self.stderr = b""
        self.raw_reply: dict[str, Any] | None = None
        self.guest_files: dict[str, bytes] = {}
        self.listing_override: list[str] | None = None
        self.lock = threading.RLock()
        self.turned_off = threading.Event()
        self.closed = False

    # --- test helpers -------------------------------------------------------------

    def fail(self, step: str, failure: Failure, times: int = 1) -> None:
        for _ in range(times):
            self.failures[step].append(failure)

    def steps(self) -> list[str]:
        return [name for name, _ in self.calls]

    def leftovers(self) -> list[str]:
        """Anything of ours still on the host."""
        root = _low(self.vm_root) + "\\"
        left = [f"vm:{n}" for n in self.vms]
        left += [p for p in self.files if p.startswith(root)]
        left += [d for d in self.dirs if d.startswith(root)]
        return sorted(left)

    def add_orphan(self, name: str, notes: str) -> None:
        vm_dir = _low(f"{self.vm_root}\\{name}")
        self.vms[name] = FakeVm(name, notes, state="Running", adapters=0)
        self.dirs.add(vm_dir)
        self.files[vm_dir + "\\system.vhdx"] = b"disk"

    # --- PowerShellTransport ----------------------------------------------------------

    def run(
        self, script: str, parameters: Mapping[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> PSResult:
        name = script_name(script)
        step = name.removeprefix("hyperv/").removesuffix(".ps1")
        params = dict(parameters or {})
        with self.lock:
            self.calls.append((step, params))
            self.scripts[step] = str(script)
            failure = self.failures[step].popleft() if self.failures[step] else None
        if isinstance(failure, OrchestratorError):
            raise failure
        if isinstance(failure, PSErrorRecord):
            return PSResult(errors=[failure])
        if failure is not None:
            return PSResult(output=[json.dumps(failure(params))])
        handler = getattr(self, "_" + step.replace("-", "_"))
        try:
            reply = handler(params)
        except _ScriptFailed as exc:
            return PSResult(errors=[PSErrorRecord(str(exc))])
        return PSResult(output=["noise", json.dumps(reply)])

    def copy_to(self, local: Path, remote: str) -> None:
        parent = _low(remote.rsplit("\\", 1)[0])
        with self.lock:
            self.calls.append(("copy_to", {"remote": remote}))
            if parent not in self.dirs:
                raise TransportError(f"no folder {parent}")
            self.files[_low(remote)] = local.read_bytes()

    def copy_from(self, remote: str, local: Path, *, max_bytes: int) -> None:
        with self.lock:
            self.calls.append(("copy_from", {"remote": remote, "max_bytes": max_bytes}))
            data = self.files.get(_low(remote))
        if data is None:
            raise TransportError(f"no file {remote}")
        if len(data) > max_bytes:
            raise OrchestratorError("too large", code="spec.too_large")
        local.write_bytes(data)

    def close(self) -> None:
        self.closed = True

    # --- step handlers -------------------------------------------------------------------

    def _vm(self, name: str) -> FakeVm:
        vm = self.vms.get(name)
        if vm is None:
            raise _ScriptFailed(f"Hyper-V was unable to find a virtual machine with name {name}")
        return vm

    def _create_vm(self, p: dict[str, Any]) -> dict[str, Any]:
        if _low(p["BaseVhd"]) not in self.images:
            raise _ScriptFailed(f"orchestrator: base image not found: {p['BaseVhd']}")
        if p["VMName"] in self.vms:
            raise _ScriptFailed("orchestrator: a VM named it already exists")
        self.dirs.add(_low(p["VMDir"]))
        self.files[_low(p["ChildVhd"])] = b"child"
        self.vms[p["VMName"]] = FakeVm(p["VMName"], p["Notes"], disks=[p["ChildVhd"]], cpu_max=p["ProcessorMaximum"])
        return {"vm": p["VMName"], "created": True}

    def _import_vm(self, p: dict[str, Any]) -> dict[str, Any]:
        if _low(p["ExportDir"]) not in self.saved_exports:
            raise _ScriptFailed("orchestrator: expected one saved-state export (.vmcx), found 0")
        self.dirs.add(_low(p["VMDir"]))
        self.files[_low(p["VMDir"]) + "\\system.vhdx"] = b"child"
        self.vms[p["VMName"]] = FakeVm(p["VMName"], p["Notes"], state="Saved", cpu_max=p["ProcessorMaximum"])
        return {"vm": p["VMName"], "created": True, "state": "Saved"}

    def _remove_nic(self, p: dict[str, Any]) -> dict[str, Any]:
        vm = self._vm(p["VMName"])
        if not self.sticky_nic:
            vm.adapters = 0
        return {"vm": vm.name, "adapters": vm.adapters}

    def _attach_inputs(self, p: dict[str, Any]) -> dict[str, Any]:
        vm = self._vm(p["VMName"])
        if p.get("ProcessorMaximum"):
            vm.cpu_max = p["ProcessorMaximum"]
        if p.get("IsoPath"):
            if _low(p["IsoPath"]) not in self.files:
                raise _ScriptFailed("orchestrator: input ISO not found")
            vm.dvd = p["IsoPath"]
        for parent, child in zip(p.get("DataParents", []), p.get("DataChildren", []), strict=True):
            self.files[_low(child)] = b"data-child:" + parent.encode()
            vm.disks.append(child)
        return {"vm": vm.name, "iso": bool(p.get("IsoPath")), "disks": len(p.get("DataChildren", []))}

    def _start_vm(self, p: dict[str, Any]) -> dict[str, Any]:
        vm = self._vm(p["VMName"])
        vm.state = "Running"
        return {"vm": vm.name, "state": vm.state}

    def _probe_guest(self, p: dict[str, Any]) -> dict[str, Any]:
        vm = self._vm(p["VMName"])
        if vm.state != "Running":
            return {"ready": False, "state": vm.state, "reason": "not running"}
        vm.probes += 1
        if p["GuestPassword"] != "s3cret!":
            return {"ready": False, "state": "Running", "reason": "The credential is invalid."}
        if vm.probes < self.ready_after:
            return {"ready": False, "state": "Running", "reason": "A remote session might have ended."}
        return {"ready": True, "state": "Running", "guest": "5.1.20348.1"}

    def _prepare_guest(self, p: dict[str, Any]) -> dict[str, Any]:
        vm = self._vm(p["VMName"])
        if p.get("IsoLabel") and vm.dvd is None:
            raise _ScriptFailed("orchestrator: input volume did not appear")
        return {"vm": vm.name, "copied": 1, "mounts": len(p.get("MountDirs", []))}

    def _run_job(self, p: dict[str, Any]) -> dict[str, Any]:
        vm = self._vm(p["VMName"])
        json.loads(p["JobJson"])  # must be valid JSON
        if self.run_hangs:
            self.turned_off.wait(10)
            raise _ScriptFailed("The virtual machine is not in running state.")
        if self.raw_reply is not None:
            return self.raw_reply
        return {
            "vm": vm.name,
            "truncated": False,
            "result": json.dumps(self.runner_result),
            "stdout": base64.b64encode(self.stdout).decode(),
            "stderr": base64.b64encode(self.stderr).decode(),
        }

    def _turn_off(self, p: dict[str, Any]) -> dict[str, Any]:
        vm = self.vms.get(p["VMName"])
        if vm is not None:
            vm.state = "Off"
        self.turned_off.set()
        return {"vm": p["VMName"], "state": vm.state if vm else "Missing"}

    def _metering(self, p: dict[str, Any]) -> dict[str, Any]:
        self._vm(p["VMName"])
        return {
            "vm": p["VMName"],
            "average_processor_mhz": 812.0,
            "maximum_memory_mb": 2048.0,
            "metering_seconds": 31.5,
        }

    def _list_artifacts(self, p: dict[str, Any]) -> dict[str, Any]:
        self._vm(p["VMName"])
        if self.listing_override is not None:
            return {"vm": p["VMName"], "files": self.listing_override}
        return {"vm": p["VMName"], "files": [f"{len(d)}|{rel}" for rel, d in sorted(self.guest_files.items())]}

    def _fetch_artifacts(self, p: dict[str, Any]) -> dict[str, Any]:
        self._vm(p["VMName"])
        self.dirs.add(_low(p["HostDir"]))
        out = []
        for i, (rel, cap) in enumerate(zip(p["GuestPaths"], p["MaxBytes"], strict=True)):
            data = self.guest_files[rel]
            target = f"{p['HostDir']}\\{i}.bin"
            if len(data) > cap:
                out.append({"index": i, "size": len(data), "kept": False})
            else:
                self.files[_low(target)] = data
                out.append({"index": i, "size": len(data), "kept": True, "path": target})
        return {"vm": p["VMName"], "files": out}

    def _teardown(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["VMName"]
        self.vms.pop(name, None)
        for path in p.get("Paths", []):
            low = _low(path)
            for key in [k for k in self.files if k == low or k.startswith(low + "\\")]:
                del self.files[key]
            for key in [d for d in self.dirs if d == low or d.startswith(low + "\\")]:
                self.dirs.discard(key)
        left = [f"vm:{name}"] if name in self.vms else []
        left += [path for path in p.get("Paths", []) if _low(path) in self.files or _low(path) in self.dirs]
        return {"vm": name, "leftovers": left, "problems": []}

    def _gc_list(self, p: dict[str, Any]) -> dict[str, Any]:
        vms = [
            {"name": vm.name, "notes": vm.notes, "state": vm.state}
            for vm in self.vms.values()
            if vm.name.startswith(p["Prefix"]) and vm.notes.startswith(p["Marker"])
        ]
        root = _low(p["VMRoot"]) + "\\"
        dirs = sorted({d[len(root) :].split("\\")[0] for d in self.dirs if d.startswith(root)})
        unmarked = [
            vm.name
            for vm in self.vms.values()
            if vm.name.startswith(p["Prefix"]) and not vm.notes.startswith(p["Marker"])
        ]
        return {"vms": vms, "unmarked": unmarked, "dirs": [d for d in dirs if d.startswith(p["Prefix"])]}

    def _probe_host(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "host": "HV01",
            "logical_processors": 16,
            "memory_bytes": 68719476736,
            "base_image": _low(p["BaseVhd"]) in self.images,
            "manifest": json.dumps({"version": "win2022-v1", "sha256": "ab" * 32}),
        }

    def _export_saved(self, p: dict[str, Any]) -> dict[str, Any]:
        vm = self._vm(p["VMName"])
        vm.state = "Saved"
        self.saved_exports.add(_low(p["ExportDir"]))
        return {"vm": vm.name, "vmcx": p["ExportDir"] + r"\Virtual Machines\X.vmcx"}


class _ScriptFailed(Exception):
    pass
