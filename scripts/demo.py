"""`make demo`: one job on the embedded default provider that shows the isolation.

The job (written as untrusted code would be) tries to change its read-only
input, tries to reach the network, and writes a report that comes back as an
artifact. The host then checks what actually happened.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

JOB = r"""
import hashlib, os, socket
data = open("/input/data.txt", "rb").read()
print("job: read the input,", len(data), "bytes")
try:
    open("/input/data.txt", "w").write("tampered")
    print("job: I CHANGED THE INPUT")
except OSError as exc:
    print("job: cannot change the input:", exc.strerror)
try:
    socket.create_connection(("1.1.1.1", 443), timeout=2)
    print("job: I REACHED THE NETWORK")
except OSError as exc:
    print("job: no network:", exc.strerror)
print("job: host processes visible:", len([p for p in os.listdir("/proc") if p.isdigit()]))
with open("/workspace/report.txt", "w") as out:
    out.write("sha256 of input: " + hashlib.sha256(data).hexdigest() + "\n")
print("job: wrote /workspace/report.txt")
"""


def main() -> int:
    inputs = Path(tempfile.mkdtemp(prefix="orchestrator-demo-input-"))
    os.chmod(inputs, 0o755)
    source = inputs / "data.txt"
    source.write_text("untrusted code must not change this file\n")
    os.chmod(source, 0o644)
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    output = Path("demo-output")
    spec = {
        "script": JOB,
        "interpreter": ["python3"],
        "mounts": [{"source": str(inputs), "target": "/input"}],
        "artifacts": ["report.txt"],
        "limits": {"timeout_s": 30, "memory_mb": 256, "pids": 64},
    }
    spec_path = inputs.parent / f"{inputs.name}.json"
    spec_path.write_text(json.dumps(spec))
    command = [sys.executable, "-m", "orchestrator", "run", "--spec", str(spec_path), "--output", str(output), "--json"]
    print("$ orchestrator run --spec demo.json --output demo-output --json\n")
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode == 125:
        print(proc.stderr, file=sys.stderr)
        return 1
    result = json.loads(proc.stdout)
    print(result["stdout"])
    report = output / "report.txt"
    checks = {
        "input unchanged on the host": hashlib.sha256(source.read_bytes()).hexdigest() == before,
        "network call failed inside": "no network" in result["stdout"],
        "input write refused inside": "cannot change the input" in result["stdout"],
        "artifact came back": report.is_file() and before in report.read_text(),
        "job completed": result["status"] == "completed",
    }
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    timings = result["timings"]
    print(
        f"\nstatus={result['status']} exit_code={result['exit_code']} provider={result['provider']} "
        f"provision={timings['provision_ms']:.1f}ms run={timings['run_ms']:.1f}ms "
        f"teardown={timings['teardown_ms']:.1f}ms; artifact: {report}"
    )
    spec_path.unlink()
    source.unlink()
    inputs.rmdir()
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
