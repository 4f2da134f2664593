"""Batch throughput: sandboxed ``orchestrator batch`` vs a plain subprocess per sample.

Generates HumanEval-style problems with correct, wrong, crashing and looping
solutions, then runs them (a) unsandboxed, one ``python3 -c`` subprocess per
sample with a wall-clock timeout, the way common harnesses do, and (b) through
``orchestrator batch`` (the real CLI, a fresh sandbox per sample), with the same
parallelism and the same interpreter, alternating the arms round by round so
machine noise hits all. Prints samples/s for each and the ratios, and checks
that the arms reach the same verdicts.

The sandboxed arm runs three ways:
- ``cpu``:  ``--cpu-time T``, as evaluations should (a looping sample gets its
            full T CPU-seconds however loaded the machine; the plain arm's loop
            gets T wall-seconds, about T/2 CPU-seconds with 4 workers on 2 cores);
- ``wall``: ``--timeout T``, the plain arm's own limit;
- ``cold``: ``--cpu-time T --cold``, a new bubblewrap sandbox and interpreter per
            sample instead of warm starts.

Target (issue #7): sandboxed / unsandboxed >= 0.5; the aim beyond it: 1.0.

    .venv/bin/python benchmarks/batch.py [--problems 64] [--parallel 4] [--rounds 2] [--no-loops]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from baselines import orchestrator_env, scratch_dirs

from orchestrator.batch.formats import humaneval_program

PYTHON = "/usr/bin/python3"  # what "python3" resolves to inside the sandbox


def problem(i: int) -> dict[str, str]:
    a, b = i % 7 + 2, i % 5 + 1
    return {
        "task_id": f"Bench/{i}",
        "entry_point": f"solve_{i}",
        "prompt": f'def solve_{i}(xs):\n    """Sort xs, scale each by {a} and add {b}; return the list."""\n',
        "test": (
            "def check(candidate):\n"
            f"    assert candidate([3, 1, 2]) == [{a} * x + {b} for x in [1, 2, 3]]\n"
            f"    assert candidate([]) == []\n"
            f"    data = list(range(200, 0, -1))\n"
            f"    assert candidate(data) == [{a} * x + {b} for x in sorted(data)]\n"
        ),
        "_a": str(a),
        "_b": str(b),
    }


def solutions(p: dict[str, str], i: int, loops: bool) -> list[tuple[str, str]]:
    a, b = p["_a"], p["_b"]
    out = [
        ("correct", f"    return [{a} * x + {b} for x in sorted(xs)]\n"),
        ("wrong", f"    return [{a} * x + {b} for x in xs]\n"),
        ("crash", "    return xs.no_such_method()\n"),
    ]
    if loops and i % 8 == 0:
        out.append(("loop", "    while True:\n        pass\n"))
    return out


def generate(n_problems: int, loops: bool, directory: Path) -> tuple[Path, Path, dict[str, str]]:
    problems, samples, kinds = [], [], {}
    for i in range(n_problems):
        p = problem(i)
        problems.append({k: v for k, v in p.items() if not k.startswith("_")})
        for j, (kind, completion) in enumerate(solutions(p, i, loops)):
            sample_id = f"{p['task_id']}#{j}"
            samples.append({"id": sample_id, "task_id": p["task_id"], "completion": completion})
            kinds[sample_id] = kind
    prob_path, sample_path = directory / "problems.jsonl", directory / "samples.jsonl"
    prob_path.write_text("".join(json.dumps(p) + "\n" for p in problems))
    sample_path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    return prob_path, sample_path, kinds


def run_plain(programs: dict[str, str], parallel: int, timeout: float) -> tuple[float, dict[str, str]]:
    def one(item: tuple[str, str]) -> tuple[str, str]:
        sample_id, program = item
        try:
            proc = subprocess.run([PYTHON, "-c", program], capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return sample_id, "timed_out"
        return sample_id, "passed" if proc.returncode == 0 else "failed"

    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        verdicts = dict(pool.map(one, programs.items()))
    return time.perf_counter() - t0, verdicts


ARMS = {
    "cpu": lambda t: ["--cpu-time", str(t), "--timeout", str(t * 5)],
    "wall": lambda t: ["--timeout", str(t)],
    "cold": lambda t: ["--cpu-time", str(t), "--timeout", str(t * 5), "--cold"],
}


def run_sandboxed(
    samples: Path, problems: Path, out: Path, parallel: int, limits: list[str], dirs: tuple[Path, Path]
) -> tuple[float, dict[str, str]]:
    out.unlink(missing_ok=True)
    argv = [
        sys.executable, "-m", "orchestrator", "batch", str(samples), "-o", str(out), "--format", "humaneval",
        "--problems", str(problems), "--parallel", str(parallel), *limits, "--quiet",
    ]  # fmt: skip
    env = orchestrator_env(*dirs)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"orchestrator batch failed ({proc.returncode}): {proc.stderr}")
    verdicts = {}
    for line in out.read_text().splitlines():
        record = json.loads(line)
        verdicts[record["id"]] = record["verdict"]
    return elapsed, verdicts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1.0, help="per-sample limit (wall for plain, CPU for batch)")
    parser.add_argument("--no-loops", action="store_true", help="leave out the looping solutions")
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=["cpu", "wall", "cold"])
    parser.add_argument("--runtime-on-disk", action="store_true", help="keep the runtime dir on disk, not tmpfs")
    args = parser.parse_args()
    data_dir, runtime_dir, where = scratch_dirs(args.runtime_on_disk)
    directory = data_dir.parent
    prob_path, sample_path, kinds = generate(args.problems, not args.no_loops, directory)
    problems = {json.loads(line)["task_id"]: json.loads(line) for line in prob_path.read_text().splitlines()}
    programs = {}
    for line in sample_path.read_text().splitlines():
        s = json.loads(line)
        p = problems[s["task_id"]]
        programs[s["id"]] = humaneval_program(p["prompt"], s["completion"], p["test"], p["entry_point"])
    n = len(programs)
    times: dict[str, list[float]] = {"plain": [], **{arm: [] for arm in args.arms}}
    verdicts: dict[str, dict[str, str]] = {}
    for _ in range(args.rounds):
        elapsed, verdicts["plain"] = run_plain(programs, args.parallel, args.timeout)
        times["plain"].append(elapsed)
        for arm in args.arms:
            out = directory / "results.jsonl"
            limits = ARMS[arm](args.timeout)
            elapsed, verdicts[arm] = run_sandboxed(
                sample_path, prob_path, out, args.parallel, limits, (data_dir, runtime_dir)
            )
            times[arm].append(elapsed)
    rates = {name: n / statistics.median(values) for name, values in times.items()}
    mix = {k: list(kinds.values()).count(k) for k in ("correct", "wrong", "crash", "loop")}
    print(f"samples: {n} {mix}; parallel {args.parallel}; rounds {args.rounds}; cpus {os.cpu_count()}; {where}")
    loop_ok = {"timed_out", "limit_exceeded"}
    for name, rate in rates.items():
        runs = ", ".join(f"{t:.2f}s" for t in times[name])
        label = "unsandboxed subprocess" if name == "plain" else f"orchestrator batch {name}"
        ratio = "" if name == "plain" else f"  ratio {rate / rates['plain']:.2f} (target >= 0.5)"
        print(f"{label:<24}: {rate:7.2f} samples/s{ratio}  (runs: {runs})")
        differ = [
            i for i in programs
            if verdicts["plain"][i] != verdicts[name].get(i)
            and not (verdicts["plain"][i] in loop_ok and verdicts[name].get(i) in loop_ok)
        ]  # fmt: skip
        if differ:
            print(f"  verdicts differ from the plain arm for {len(differ)}: {differ[:5]}")
    shutil.rmtree(directory, ignore_errors=True)
    shutil.rmtree(runtime_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
