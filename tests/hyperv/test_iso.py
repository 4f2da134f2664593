"""The ISO builder, for real: build from a folder and read it back with pycdlib."""

from __future__ import annotations

import io
from pathlib import Path

import pycdlib
import pytest

from orchestrator.errors import InvalidMountError, PayloadTooLargeError
from orchestrator.providers.hyperv.iso import IsoFile, build_iso, tree_files

LONG = "a-very-long-file-name-" + "x" * 100 + ".txt"  # 126 chars: beyond Joliet's 64
NON_ASCII = "Ünïcødé-日本語-файл.txt"
DEEP = "/".join(f"level{i}" for i in range(10))


def _read(iso_path: Path, kind: str) -> dict[str, bytes]:
    iso = pycdlib.PyCdlib()
    iso.open(str(iso_path))
    try:
        out: dict[str, bytes] = {}
        for root, _dirs, files in iso.walk(**{kind: "/"}):
            for name in files:
                path = f"{root.rstrip('/')}/{name}"
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, **{kind: path})
                out[path] = buf.getvalue()
        return out
    finally:
        iso.close()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub dir" / DEEP).mkdir(parents=True)
    (src / "plain.txt").write_bytes(b"plain")
    (src / LONG).write_bytes(b"long")
    (src / NON_ASCII).write_text("ünïcødé", encoding="utf-8")
    (src / "sub dir" / "empty.bin").write_bytes(b"")
    (src / "sub dir" / DEEP / "deep.txt").write_bytes(b"deep")
    (src / "binary.dat").write_bytes(bytes(range(256)) * 40)
    (src / "link").symlink_to(src / "plain.txt")  # not followed, not included
    return src


def test_folder_round_trips_through_udf_with_names_and_contents_intact(tree: Path, tmp_path: Path) -> None:
    files = tree_files(tree, "mounts/0") + [IsoFile("files/inline.txt", data=b"inline")]
    dest = tmp_path / "out.iso"
    size = build_iso(dest, files, label="ORCHTEST", max_bytes=10**6)

    udf = _read(dest, "udf_path")
    expected = {
        "/mounts/0/plain.txt": b"plain",
        f"/mounts/0/{LONG}": b"long",
        f"/mounts/0/{NON_ASCII}": "ünïcødé".encode(),
        "/mounts/0/sub dir/empty.bin": b"",
        f"/mounts/0/sub dir/{DEEP}/deep.txt": b"deep",
        "/mounts/0/binary.dat": bytes(range(256)) * 40,
        "/files/inline.txt": b"inline",
    }
    assert udf == expected
    assert size == sum(len(v) for v in expected.values())


def test_rock_ridge_keeps_every_name_and_joliet_keeps_those_that_fit(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out.iso"
    build_iso(dest, tree_files(tree, "m"), label="ORCHTEST", max_bytes=10**6)
    rock_ridge = _read(dest, "rr_path")
    joliet = _read(dest, "joliet_path")
    assert rock_ridge[f"/m/{LONG}"] == b"long"
    assert rock_ridge[f"/m/{NON_ASCII}"] == "ünïcødé".encode()
    assert joliet[f"/m/{NON_ASCII}"] == "ünïcødé".encode()
    assert f"/m/{LONG}" not in joliet  # too long for Joliet: present in UDF and Rock Ridge only
    assert "/m/link" not in rock_ridge


def test_volume_label_is_set(tmp_path: Path) -> None:
    dest = tmp_path / "out.iso"
    build_iso(dest, [IsoFile("a.txt", data=b"a")], label="ORCHABC123", max_bytes=10)
    iso = pycdlib.PyCdlib()
    iso.open(str(dest))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "ORCHABC123"
    finally:
        iso.close()


def test_size_cap_is_enforced_before_writing(tmp_path: Path) -> None:
    dest = tmp_path / "out.iso"
    with pytest.raises(PayloadTooLargeError) as info:
        build_iso(dest, [IsoFile("a", data=b"x" * 11)], label="L", max_bytes=10)
    assert "data VHDX" in info.value.details["fix"]
    assert not dest.exists()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([IsoFile("a.txt", data=b""), IsoFile("a.txt", data=b"")], "given twice"),
        ([IsoFile("d/x", data=b""), IsoFile("d", data=b"")], "given twice"),
        ([IsoFile("../x", data=b"")], "invalid ISO path"),
        ([IsoFile("n" * 300, data=b"")], "too long"),
        ([IsoFile("日" * 128, data=b"")], "too long"),
    ],
)
def test_invalid_layouts_are_refused(tmp_path: Path, files: list[IsoFile], message: str) -> None:
    with pytest.raises(InvalidMountError, match=message):
        build_iso(tmp_path / "x.iso", files, label="L", max_bytes=100)


def test_missing_and_empty_sources(tmp_path: Path) -> None:
    with pytest.raises(InvalidMountError, match="does not exist"):
        tree_files(tmp_path / "nope", "m")
    (tmp_path / "empty").mkdir()
    assert [f.path for f in tree_files(tmp_path / "empty", "m")] == ["m/.orchestrator-empty"]
    (tmp_path / "one.txt").write_bytes(b"1")
    assert [f.path for f in tree_files(tmp_path / "one.txt", "m")] == ["m/one.txt"]
