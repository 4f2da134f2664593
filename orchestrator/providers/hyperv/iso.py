"""Build the read-only input ISO for a job VM in pure Python (pycdlib).

The image carries three name spaces so that long and non-ASCII names survive
whichever one the reader uses: UDF 2.60 (what Windows prefers), Joliet
(names up to 64 UCS-2 characters) and Rock Ridge. The ISO9660 names are
generated 8.3 placeholders that nobody should read.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import InvalidMountError, PayloadTooLargeError

log = logging.getLogger(__name__)

JOLIET_MAX = 64
UDF_MAX_BYTES = 254  # one d-string byte holds the compression id


@dataclass(frozen=True)
class IsoFile:
    path: str  # "/"-separated, relative to the ISO root
    data: bytes | None = None  # inline content ...
    source: Path | None = None  # ... or a file on the control plane


@dataclass
class _Dir:
    iso_name: str
    dirs: dict[str, _Dir] = field(default_factory=dict)
    files: dict[str, IsoFile] = field(default_factory=dict)


def tree_files(root: Path, prefix: str) -> list[IsoFile]:
    """Every regular file under ``root`` (symlinks are not followed), placed under ``prefix``."""
    if not root.exists():
        raise InvalidMountError(f"mount source {str(root)!r} does not exist", details={"source": str(root)})
    if root.is_file():
        return [IsoFile(f"{prefix}/{root.name}", source=root)]
    out: list[IsoFile] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            out.append(IsoFile("/".join([prefix, *rel.parts, name]), source=path))
    if not out:
        out.append(IsoFile(f"{prefix}/.orchestrator-empty", data=b""))
    return out


def build_iso(dest: Path, files: Iterable[IsoFile], *, label: str, max_bytes: int) -> int:
    """Write an ISO holding ``files`` to ``dest``; return the payload size in bytes."""
    import pycdlib  # imported here: only the control plane building a job needs it

    root = _Dir("")
    total = 0
    for item in files:
        size = len(item.data) if item.data is not None else _source_size(item)
        total += size
        if total > max_bytes:
            raise PayloadTooLargeError(
                f"inputs exceed {max_bytes} bytes, too large for the job ISO",
                details={"max_bytes": max_bytes, "fix": "put large inputs on a data VHDX and mount that"},
            )
        _insert(root, item)

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", udf="2.60", vol_ident=label[:32])
    handles: list[io.BufferedReader] = []
    try:
        _emit(iso, root, iso_path="", name_path="", handles=handles)
        dest.parent.mkdir(parents=True, exist_ok=True)
        iso.write(str(dest))
    finally:
        iso.close()
        for handle in handles:
            handle.close()
    log.debug("built ISO %s with %d payload bytes", dest, total)
    return total


def _source_size(item: IsoFile) -> int:
    assert item.source is not None
    return item.source.stat().st_size


def _insert(root: _Dir, item: IsoFile) -> None:
    parts = [p for p in item.path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise InvalidMountError(f"invalid ISO path {item.path!r}", details={"path": item.path})
    node = root
    for part in parts[:-1]:
        _check_name(part)
        child = node.dirs.get(part)
        if child is None:
            if part in node.files:
                raise InvalidMountError(f"{item.path!r} clashes with a file", details={"path": item.path})
            child = node.dirs[part] = _Dir(f"D{len(node.dirs) + 1:07d}")
        node = child
    name = parts[-1]
    _check_name(name)
    if name in node.files or name in node.dirs:
        raise InvalidMountError(f"{item.path!r} is given twice", details={"path": item.path})
    node.files[name] = item


def _check_name(name: str) -> None:
    encoded = name.encode("latin-1") if _is_latin1(name) else name.encode("utf-16-be")
    if len(encoded) > UDF_MAX_BYTES or "\0" in name or "/" in name:
        raise InvalidMountError(f"file name {name[:80]!r}... is too long for UDF", details={"name": name[:80]})


def _is_latin1(name: str) -> bool:
    try:
        name.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _emit(iso: Any, node: _Dir, *, iso_path: str, name_path: str, handles: list[io.BufferedReader]) -> None:
    for index, (name, item) in enumerate(sorted(node.files.items()), start=1):
        iso_name = f"{iso_path}/F{index:07d}.;1"
        full = f"{name_path}/{name}"
        joliet = full if _joliet_ok(full) else None
        if item.data is not None:
            iso.add_fp(
                io.BytesIO(item.data),
                len(item.data),
                iso_name,
                rr_name=name,
                joliet_path=joliet,
                udf_path=full,
            )
        else:
            assert item.source is not None
            handle = item.source.open("rb")
            handles.append(handle)
            iso.add_fp(handle, _source_size(item), iso_name, rr_name=name, joliet_path=joliet, udf_path=full)
    for name, child in sorted(node.dirs.items()):
        child_iso = f"{iso_path}/{child.iso_name}"
        full = f"{name_path}/{name}"
        joliet = full if _joliet_ok(full) else None
        iso.add_directory(child_iso, rr_name=name, joliet_path=joliet, udf_path=full)
        _emit(iso, child, iso_path=child_iso, name_path=full, handles=handles)


def _joliet_ok(path: str) -> bool:
    # A Joliet entry needs every component short enough; deeper entries are UDF/Rock Ridge only.
    return all(len(part) <= JOLIET_MAX for part in path.split("/"))
