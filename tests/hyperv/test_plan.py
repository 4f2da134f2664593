"""Pure planning: names, shapes, mount validation (``spec.invalid_mount``)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.errors import InvalidMountError, InvalidPathError, SpecError
from orchestrator.providers.hyperv.config import HyperVSettings
from orchestrator.providers.hyperv.plan import (
    MARKER,
    guest_target,
    guest_workdir,
    make_plan,
    owner_from_notes,
    vm_name_for,
)
from orchestrator.spec import JobSpec


def _settings(**kw: Any) -> HyperVSettings:
    return HyperVSettings.model_validate(kw)


def _spec(**kw: Any) -> JobSpec:
    return JobSpec.model_validate({"command": ["python", "-c", "print(1)"], **kw})


def test_plan_names_paths_and_marker() -> None:
    plan = make_plan(_settings(), "job-123", _spec(limits={"memory_mb": 3000, "cpus": 1.5}))
    assert plan.vm_name.startswith("orch-job-123-")
    assert plan.vm_dir == rf"C:\ProgramData\Orchestrator\vms\{plan.vm_name}"
    assert plan.child_vhd == plan.vm_dir + r"\system.vhdx"
    assert plan.base_vhd == r"C:\ProgramData\Orchestrator\images\win2022-v1\base.vhdx"
    assert plan.shape.memory_mb == 3000 and plan.shape.cpus == 2
    assert plan.processor_max_percent == 75
    assert plan.notes.startswith(MARKER + " ")
    assert owner_from_notes(plan.notes) == "job-123"
    assert plan.leftovers_to_check()[-1] == plan.vm_dir


def test_memory_floor_and_image_from_spec() -> None:
    plan = make_plan(_settings(), "j", _spec(image="win2025-v3", limits={"memory_mb": 64}))
    assert plan.shape.memory_mb == 2048
    assert plan.shape.image == "win2025-v3"
    assert r"\win2025-v3\base.vhdx" in plan.base_vhd


@pytest.mark.parametrize("image", ["../x", "a b", "x" * 65, "-lead"])
def test_bad_image_versions_are_refused(image: str) -> None:
    with pytest.raises(SpecError) as info:
        make_plan(_settings(), "j", _spec(image=image))
    assert info.value.code == "spec.invalid_image"


def test_hostile_sandbox_ids_make_safe_names() -> None:
    hostile = "x'; Remove-VM * -Force; $(calc) `n"
    name = vm_name_for(_settings(), hostile)
    assert name.startswith("orch-") and all(c.isalnum() or c == "-" for c in name)
    assert vm_name_for(_settings(), hostile + "!") != name  # the digest keeps distinct ids apart
    plan = make_plan(_settings(), hostile, _spec())
    assert " " not in plan.notes.split(" ", 1)[1].split("=", 1)[1].split(" ")[0]
    assert owner_from_notes("somebody else's VM") is None


@pytest.mark.parametrize(
    ("target", "expected"),
    [("data", "data"), ("/workspace/in/data", r"in\data"), (r"C:\Jobs\workspace\x", "x"), ("./a/./b", r"a\b")],
)
def test_mount_targets_map_into_the_workspace(target: str, expected: str) -> None:
    assert guest_target(target) == expected


@pytest.mark.parametrize(
    "target",
    [
        "/etc",
        r"C:\Windows\System32",
        "../up",
        "/workspace/../x",
        "a/CON",
        "a/nul.txt",
        "a/b:stream",
        "a/x.",
        "/workspace",
    ],
)
def test_bad_mount_targets_are_invalid_mount(target: str) -> None:
    with pytest.raises(InvalidMountError) as info:
        guest_target(target)
    assert info.value.code == "spec.invalid_mount"


def test_mount_classification(tmp_path: Any) -> None:
    spec = _spec(
        mounts=[
            {"source": str(tmp_path), "target": "in"},
            {"source": r"D:\data\corpus_1.vhdx", "target": "/workspace/corpus"},
        ]
    )
    plan = make_plan(_settings(), "j", spec)
    assert [m.iso_dir for m in plan.iso_mounts] == ["mounts/0"]
    (disk,) = plan.data_disks
    assert disk.parent == r"D:\data\corpus_1.vhdx" and disk.label == "corpus_1" and disk.target == "corpus"
    assert disk.child.startswith(plan.vm_dir + "\\")
    assert disk.child in plan.leftovers_to_check()


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ({"source": "/tmp", "target": "in", "read_only": False}, "read-only"),
        ({"source": r"\\server\share", "target": "in"}, "control-plane folder"),
        ({"source": r"D:\data\bad name!.vhdx", "target": "in"}, "volume label"),
        ({"source": r"D:\data\CON\x.vhdx", "target": "in"}, "not a valid Windows file name"),
    ],
)
def test_bad_mounts(mount: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidMountError, match=message):
        make_plan(_settings(), "j", _spec(mounts=[mount]))


def test_duplicate_data_disk_labels() -> None:
    mounts = [{"source": r"D:\a\set.vhdx", "target": "a"}, {"source": r"E:\b\SET.vhdx", "target": "b"}]
    with pytest.raises(InvalidMountError, match="volume label"):
        make_plan(_settings(), "j", _spec(mounts=mounts))


def test_duplicate_targets_case_insensitive() -> None:
    spec = _spec(mounts=[{"source": "/a", "target": "Data"}, {"source": "/b", "target": "data"}])
    with pytest.raises(InvalidMountError, match="used twice"):
        make_plan(_settings(), "j", spec)


def test_workdir_mapping() -> None:
    s = _settings()
    assert guest_workdir(s, "/workspace") == r"C:\Jobs\workspace"
    assert guest_workdir(s, "/workspace/src/app") == r"C:\Jobs\workspace\src\app"
    with pytest.raises(InvalidPathError):
        guest_workdir(s, "/tmp")


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("ORCH_HYPERV_POOL_SIZE", "3")
    monkeypatch.setenv("ORCH_HYPERV_GUEST_PASSWORD", "pw")
    s = HyperVSettings()
    assert s.pool_size == 3 and s.guest_credentials() == ("orchjob", "pw")
    secrets = tmp_path / "guest.json"
    secrets.write_text('{"username": "u2", "password": "p2"}')
    monkeypatch.setenv("ORCH_HYPERV_GUEST_SECRETS_FILE", str(secrets))
    assert HyperVSettings().guest_credentials() == ("u2", "p2")
