"""The results file (JSON lines, written as results arrive) and the summary next to it."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import IO, Any

from orchestrator.batch.passk import mean_pass_at_k
from orchestrator.batch.verdicts import Verdict

DEFAULT_KS = (1, 10, 100)


def summary_path(results: Path) -> Path:
    name = results.name.removesuffix(".jsonl")
    return results.with_name(f"{name}.summary.json")


def read_results(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a results file; a torn last line (a crash mid-write) is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    keep = len(data)
    records: list[dict[str, Any]] = []
    offset = 0
    for raw in data.splitlines(keepends=True):
        try:
            record = json.loads(raw) if raw.endswith(b"\n") else None
        except ValueError:
            record = None
        if not isinstance(record, dict) or "id" not in record or "verdict" not in record:
            keep = offset
            break
        records.append(record)
        offset += len(raw)
    if keep < len(data):
        with path.open("r+b") as handle:
            handle.truncate(keep)
    return records


def finished_ids(records: list[dict[str, Any]]) -> set[str]:
    """Samples ``--resume`` skips: those with a verdict about the code (infra errors run again)."""
    return {str(r["id"]) for r in records if r.get("verdict") != Verdict.INFRA_ERROR.value}


class ResultWriter:
    """Appends one JSON line per result and flushes it, so a kill loses at most the line being written."""

    def __init__(self, path: Path, *, append: bool):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("a" if append else "w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def summarize(
    records: list[dict[str, Any]],
    *,
    ks: tuple[int, ...] = DEFAULT_KS,
    elapsed_s: float,
    ran: int,
    interrupted: bool = False,
) -> dict[str, Any]:
    """Counts by verdict and pass@k over the latest record per sample; infra errors count for nothing."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        latest[str(record["id"])] = record
    verdicts = Counter(str(r["verdict"]) for r in latest.values())
    per_task: dict[str, list[int]] = {}
    for record in latest.values():
        if record["verdict"] == Verdict.INFRA_ERROR.value:
            continue
        n_c = per_task.setdefault(str(record.get("task", record["id"])), [0, 0])
        n_c[0] += 1
        n_c[1] += record["verdict"] == Verdict.PASSED.value
    judged = sum(n for n, _ in per_task.values())
    passk = mean_pass_at_k({t: (n, c) for t, (n, c) in per_task.items()}, ks)
    return {
        "samples": len(latest),
        "tasks": len(per_task),
        "verdicts": {v.value: verdicts.get(v.value, 0) for v in Verdict},
        "pass_rate": round(verdicts.get(Verdict.PASSED.value, 0) / judged, 6) if judged else None,
        "pass_at_k": {f"pass@{k}": round(v, 6) for k, v in passk.items()},
        "infra_errors": verdicts.get(Verdict.INFRA_ERROR.value, 0),
        "retried_attempts": sum(max(0, int(r.get("attempts", 1)) - 1) for r in latest.values()),
        "ran_this_session": ran,
        "elapsed_s": round(elapsed_s, 3),
        "samples_per_s": round(ran / elapsed_s, 3) if elapsed_s > 0 else None,
        "interrupted": interrupted,
    }


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def render_text(summary: dict[str, Any]) -> str:
    v = summary["verdicts"]
    lines = [
        f"samples {summary['samples']} in {summary['tasks']} tasks: "
        + ", ".join(f"{name} {count}" for name, count in v.items()),
    ]
    if summary["pass_at_k"]:
        lines.append("  ".join(f"{k} {val:.4f}" for k, val in summary["pass_at_k"].items()))
    rate = summary["samples_per_s"]
    lines.append(
        f"ran {summary['ran_this_session']} in {summary['elapsed_s']:.1f}s"
        + (f" ({rate:.2f} samples/s)" if rate else "")
        + (f"; infra errors {summary['infra_errors']} (not counted as failures)" if summary["infra_errors"] else "")
    )
    return "\n".join(lines)
