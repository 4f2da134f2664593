"""Real sandboxes: verdicts for each kind of sample, and isolation between samples."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.batch.formats import Sample, humaneval_program
from orchestrator.batch.runner import BatchOptions, LocalExecutor, run_batch
from orchestrator.engine import Engine
from orchestrator.settings import Settings
from tests.batch.conftest import CORRECT, CRASH, LOOP, PROBLEM, WRONG
from tests.conftest import assert_nothing_left


@pytest.fixture(params=["warm", "cold"])
def executor(request: pytest.FixtureRequest, engine: Engine) -> Iterator[LocalExecutor]:
    """Both ways a local batch runs Python samples: from the warm interpreter, and cold."""
    local = LocalExecutor(engine, warm=request.param == "warm")
    assert (local.warm is not None) == (request.param == "warm")
    yield local
    local.close()


def he(completion: str, i: int) -> Sample:
    p = PROBLEM
    return Sample(id=f"T/0#{i}", task="T/0", program=humaneval_program(p["prompt"], completion, p["test"], "add"))


def test_each_kind_of_sample_gets_its_verdict(executor: LocalExecutor, no_leaks: None) -> None:
    samples = [he(c, i) for i, c in enumerate((CORRECT, WRONG, CRASH, LOOP))]
    samples.append(Sample(id="sleep", task="S", program="import time\ntime.sleep(30)\n"))
    samples.append(Sample(id="job", task="J", spec={"command": ["/no/such/command"]}))
    records: list[dict[str, Any]] = []
    options = BatchOptions(parallel=3, limits={"cpu_s": 1.0, "timeout_s": 3.0})
    run_batch(samples, executor, options, on_record=records.append)
    executor.close()
    verdicts = {r["id"]: r["verdict"] for r in records}
    assert verdicts == {
        "T/0#0": "passed",
        "T/0#1": "failed",
        "T/0#2": "failed",
        "T/0#3": "limit_exceeded",  # CPU time, not wall clock: the same on a loaded machine
        "sleep": "timed_out",
        "job": "failed",  # a missing command in a jobs line is the line's fault
    }
    crash = next(r for r in records if r["id"] == "T/0#2")
    assert "ValueError: boom" in crash["stderr_tail"] and crash["exit_code"] == 1
    assert next(r for r in records if r["id"] == "T/0#3")["error_code"] == "limit.cpu"


def test_missing_interpreter_is_an_infra_error(engine: Engine, no_leaks: None) -> None:
    records: list[dict[str, Any]] = []
    opts = BatchOptions(parallel=1, retries=1, retry_backoff_s=0.0, python=["/no/python3"])
    run_batch([he(CORRECT, 0)], LocalExecutor(engine), opts, on_record=records.append)
    (record,) = records
    assert record["verdict"] == "infra_error" and record["attempts"] == 2
    assert record["error_code"] == "job.command_not_found"


LEAVER = """
import os, subprocess, sys
for path in ("/workspace/leak.txt", "/tmp/leak.txt"):
    open(path, "w").write("secret")
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "orch-leak-marker"], start_new_session=True)
import time; time.sleep(0.2)
seen = [p for p in os.listdir("/proc") if p.isdigit()
        and b"orch-leak-marker" in open(f"/proc/{p}/cmdline", "rb").read()]
assert seen, "the background process did not start"
assert os.path.exists("/workspace/leak.txt") and os.path.exists("/tmp/leak.txt")
"""

LOOKER = """
import os
for path in ("/workspace/leak.txt", "/tmp/leak.txt"):
    assert not os.path.exists(path), path
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            cmd = open(f"/proc/{p}/cmdline", "rb").read()
        except OSError:
            continue
        assert b"orch-leak-marker" not in cmd, cmd
print("clean")
"""


def test_nothing_leaks_from_one_sample_to_the_next(executor: LocalExecutor, settings: Settings) -> None:
    records: list[dict[str, Any]] = []
    samples = [Sample(id="1", task="leaver", program=LEAVER), Sample(id="2", task="looker", program=LOOKER)]
    run_batch(samples, executor, BatchOptions(parallel=1), on_record=records.append)
    executor.close()
    assert [(r["id"], r["verdict"]) for r in records] == [("1", "passed"), ("2", "passed")], records
    assert records[1]["stdout_tail"] == "clean\n"
    assert_nothing_left(settings)  # the background process died with sample 1's sandbox
