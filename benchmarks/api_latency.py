"""API latency beside its baselines, measured in one run on this host.

    .venv/bin/python benchmarks/api_latency.py [--calls 300] [--json]

- job:  ``POST /v1/jobs?wait=true`` for ``/bin/true`` over HTTP to ``orchestrator serve``,
        against the raw sandbox spawn: the job's bubblewrap sandbox started directly
        (``benchmarks/baselines.py``). Target: <= 2x.
- exec: ``POST /v1/sessions/{id}/exec`` for ``/bin/true``, against a raw process spawn
        inside a sandbox, timed there, call by call in turn with the API.
        Target: <= raw + 2 ms.
For scale it also prints a plain host spawn, the engine in-process (a job without
HTTP) and a session command in-process (``LinuxProvider.exec``, no HTTP).
The API arms use a minimal keep-alive HTTP/1.1 client (one write per request),
so the figures are the service's; the same exec through httpx is printed too
(``api_session_exec_httpx``): the difference is the client library's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines import InSandboxSpawner, RawSandbox, orchestrator_env, scratch_dirs  # noqa: E402

from orchestrator.cancel import CancelToken  # noqa: E402
from orchestrator.engine import Engine  # noqa: E402
from orchestrator.output import OutputCapture  # noqa: E402
from orchestrator.providers.base import ExecRequest  # noqa: E402
from orchestrator.providers.linux import LinuxProvider  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.spec import parse_job_spec, parse_session_spec  # noqa: E402


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3), "p99_ms": round(p99 * 1000, 3)}


def measure(arms: dict[str, Callable[[], object]], calls: int, warmup: int = 10) -> dict[str, dict[str, float]]:
    """p50/p99 of each arm, the arms taking turns call by call so machine noise hits all alike.

    An arm that returns a float has timed itself (seconds), e.g. inside a sandbox.
    """
    for _ in range(warmup):
        for fn in arms.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(calls):
        for name, fn in arms.items():
            started = time.perf_counter()
            value = fn()
            samples[name].append(value if isinstance(value, float) else time.perf_counter() - started)
    return {name: percentiles(values) for name, values in samples.items()}


class LeanClient:
    """Keep-alive HTTP/1.1 over one socket; each request goes out in a single write."""

    def __init__(self, port: int):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def post(self, path: str, body: object) -> tuple[int, dict[str, object]]:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + payload)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        header, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = header.decode("latin-1").split("\r\n")
        length = next(
            int(v) for k, _, v in (line.partition(":") for line in lines[1:]) if k.lower() == "content-length"
        )
        while len(self.buffer) < length:
            self.buffer += self._recv()
        content, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), json.loads(content)

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(root: Path, port: int, runtime_dir: Path | None = None) -> subprocess.Popen[bytes]:
    env = orchestrator_env(root / "server-data", runtime_dir or root / "server-run")
    log = open(root / "server.log", "wb")  # noqa: SIM115 - kept open for the server's lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"server did not start; see {root / 'server.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--runtime-on-disk", action="store_true", help="keep the runtime dirs on disk, not tmpfs")
    args = parser.parse_args()

    data_dir, runtime_dir, where = scratch_dirs(args.runtime_on_disk)
    root = data_dir.parent
    settings = Settings(data_dir=data_dir, runtime_dir=runtime_dir / "engine")
    engine = Engine(settings)
    spec = parse_job_spec({"command": ["/bin/true"]})
    report: dict[str, dict[str, float]] = {}

    provider = engine.provider("linux")
    assert isinstance(provider, LinuxProvider)
    raw = RawSandbox(provider, spec)
    spawner = InSandboxSpawner(provider)
    box = provider.create("bench-raw", parse_session_spec({}).as_job(["true"]), session=True)
    request = ExecRequest(["/bin/true"], {}, "/workspace", 10)
    port = free_port()
    server = start_server(root, port, runtime_dir / "server")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            lean = LeanClient(port)

            def api_job() -> None:
                status, doc = lean.post("/v1/jobs?wait=true", {"command": ["/bin/true"]})
                assert status == 201 and doc["status"] == "completed", doc

            session = client.post("/v1/sessions", json={}).json()["id"]

            def api_exec() -> None:
                status, doc = lean.post(f"/v1/sessions/{session}/exec", {"command": ["/bin/true"]})
                assert status == 200 and doc["exit_code"] == 0, doc

            def api_exec_httpx() -> None:
                resp = client.post(f"/v1/sessions/{session}/exec", json={"command": ["/bin/true"]})
                assert resp.status_code == 200 and resp.json()["exit_code"] == 0, resp.text

            report.update(
                measure(
                    {
                        "host_process_spawn": lambda: subprocess.run(["/bin/true"], check=True),
                        "raw_sandbox_spawn": raw.spawn,
                        "engine_in_process": lambda: engine.run(spec),
                        "api_job_wait": api_job,
                    },
                    args.calls,
                )
            )
            report.update(
                measure(
                    {
                        "spawn_inside_sandbox": spawner.spawn,
                        "session_exec_in_process": lambda: provider.exec(
                            box, request, OutputCapture(65536), CancelToken()
                        ),
                        "api_session_exec": api_exec,
                        "api_session_exec_httpx": api_exec_httpx,
                    },
                    args.calls,
                )
            )
            client.delete(f"/v1/sessions/{session}")
            lean.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        provider.destroy(box)
        raw.close()
        spawner.close()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(runtime_dir, ignore_errors=True)

    job, raw = report["api_job_wait"], report["raw_sandbox_spawn"]
    exe, raw_exec = report["api_session_exec"], report["spawn_inside_sandbox"]
    verdict = {
        "job_p50_ratio": round(job["p50_ms"] / raw["p50_ms"], 2),
        "job_p99_ratio": round(job["p99_ms"] / raw["p99_ms"], 2),
        "exec_p50_overhead_ms": round(exe["p50_ms"] - raw_exec["p50_ms"], 3),
        "exec_p99_overhead_ms": round(exe["p99_ms"] - raw_exec["p99_ms"], 3),
    }
    ok = (
        verdict["job_p50_ratio"] <= 2
        and verdict["job_p99_ratio"] <= 2
        and verdict["exec_p50_overhead_ms"] <= 2
        and verdict["exec_p99_overhead_ms"] <= 2
    )
    if args.json:
        print(json.dumps({"calls": args.calls, "results": report, "verdict": verdict, "targets_met": ok}, indent=2))
    else:
        print(f"{'measurement':<24} {'p50 ms':>9} {'p99 ms':>9}   ({args.calls} calls each; {where})")
        for name, values in report.items():
            print(f"{name:<24} {values['p50_ms']:>9.3f} {values['p99_ms']:>9.3f}")
        print(
            f"job: {verdict['job_p50_ratio']}x / {verdict['job_p99_ratio']}x the raw sandbox spawn (target <= 2x); "
            f"exec: +{verdict['exec_p50_overhead_ms']} / +{verdict['exec_p99_overhead_ms']} ms over a raw "
            f"spawn in the sandbox (target <= 2 ms): {'met' if ok else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
