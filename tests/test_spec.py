"""Bad input gets a stable code before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import SpecError
from orchestrator.settings import MaxLimits
from orchestrator.spec import Limits, load_job_spec, parse_job_spec


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({}, "spec.invalid_command"),
        ({"command": ["a"], "script": "b"}, "spec.invalid_command"),
        ({"command": []}, "spec.invalid"),
        ({"command": ["a\0b"]}, "spec.invalid_command"),
        ({"command": [""]}, "spec.invalid_command"),
        ({"command": ["x"], "unknown": 1}, "spec.invalid"),
        ({"command": ["x"], "limits": {"timeout_s": -1}}, "spec.invalid"),
        ({"command": ["x"], "limits": {"memory_mb": 10**12}}, "spec.invalid"),
        ({"command": ["x"], "limits": {"pids": 0}}, "spec.invalid"),
        ({"command": ["x"], "files": [{"path": "../etc/passwd", "content": ""}]}, "spec.invalid_path"),
        ({"command": ["x"], "files": [{"path": "/etc/passwd", "content": ""}]}, "spec.invalid_path"),
        ({"command": ["x"], "artifacts": ["../../*"]}, "spec.invalid_path"),
        ({"command": ["x"], "env": {"A=B": "c"}}, "spec.invalid_env"),
        ({"command": ["x"], "workdir": "relative"}, "spec.invalid_path"),
        ({"command": ["x"], "network": {"mode": "host"}}, "spec.invalid"),
        ({"command": ["x"], "mounts": [{"source": "/a\0", "target": "/b"}]}, "spec.invalid_mount"),
        ({"command": ["x"], "files": [{"path": "a", "content": "x" * (3 * 1024 * 1024)}]}, "spec.invalid"),
        ({"command": ["x" * 300_000]}, "spec.too_large"),
    ],
)
def test_bad_specs_have_stable_codes(data: dict[str, object], code: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_job_spec(data)
    assert info.value.code == code, info.value.message
    assert info.value.message


def test_inline_file_inside_workspace_is_normalised() -> None:
    spec = parse_job_spec({"command": ["x"], "files": [{"path": "/workspace/a/./b.txt", "content": "hi"}]})
    assert spec.files[0].path == "a/b.txt"


def test_mounts_default_to_read_only_and_network_to_none() -> None:
    spec = parse_job_spec({"command": ["x"], "mounts": [{"source": "/a", "target": "/b"}]})
    assert spec.mounts[0].read_only is True
    assert spec.network.mode == "none"


def test_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as missing:
        load_job_spec(tmp_path / "nope.json")
    assert missing.value.code == "spec.unreadable"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError) as malformed:
        load_job_spec(bad)
    assert malformed.value.code == "spec.malformed"
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"script": "echo hi", "interpreter": ["/bin/sh", "-e"]}))
    assert load_job_spec(good).argv("/s") == ["/bin/sh", "-e", "/s"]


def test_operator_maxima() -> None:
    maxima = MaxLimits(memory_mb=1024)
    maxima.check(Limits(memory_mb=1024))
    with pytest.raises(SpecError) as info:
        maxima.check(Limits(memory_mb=2048))
    assert info.value.code == "spec.limit_exceeds_maximum"
    assert info.value.details["maximum"] == 1024


def test_session_spec_checks_the_environment_like_a_job() -> None:
    from orchestrator.spec import parse_session_spec

    with pytest.raises(SpecError) as info:
        parse_session_spec({"env": {"": "x"}})
    assert info.value.code == "spec.invalid_env"


def test_path_errors_name_the_path() -> None:
    with pytest.raises(SpecError) as info:
        parse_job_spec({"command": ["x"], "artifacts": ["../secret"]})
    assert "'../secret'" in info.value.message and "{path" not in info.value.message
