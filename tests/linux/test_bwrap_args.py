"""The bubblewrap command line, read as data: what a job can and cannot see."""

from __future__ import annotations

from pathlib import Path

from orchestrator.providers.linux import bwrap
from orchestrator.providers.linux.mounts import ResolvedMount


def layout(**kw: object) -> bwrap.Layout:
    base = {
        "workspace": Path("/run/o/ws"),
        "internal": Path("/run/o/in"),
        "etc_overrides": Path("/run/o/etc"),
        "mounts": [
            ResolvedMount(Path("/data/in"), "/input", True, True),
            ResolvedMount(Path("/data/out"), "/out", False, True),
        ],
        "env": {"PATH": "/usr/bin", "A": "b"},
        "workdir": "/workspace",
        "tmp_bytes": 1 << 20,
    }
    base.update(kw)
    return bwrap.Layout(**base)  # type: ignore[arg-type]


def pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_every_namespace_is_new_and_nothing_is_shared() -> None:
    argv = bwrap.build_argv(Path("/b"), layout(), ["true"], seccomp_fd=5, status_fd=6)
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                 "--disable-userns", "--die-with-parent", "--new-session", "--clearenv"):  # fmt: skip
        assert flag in argv
    assert "--share-net" not in argv and "--dev-bind" not in argv
    assert argv[argv.index("--seccomp") + 1] == "5"
    assert argv[-2:] == ["--", "true"]


def test_inputs_read_only_unless_asked_and_host_root_never_bound() -> None:
    argv = bwrap.build_argv(Path("/b"), layout(), ["true"], seccomp_fd=5, status_fd=6)
    assert ("/data/in", "/input") in pairs(argv, "--ro-bind")
    assert ("/data/out", "/out") in pairs(argv, "--bind")
    sources = [s for s, _ in pairs(argv, "--bind") + pairs(argv, "--ro-bind")]
    assert "/" not in sources and "/root" not in sources and "/home" not in sources
    assert ("/run/o/ws", "/workspace") in pairs(argv, "--bind")


def test_rootfs_replaces_the_host_system_view(tmp_path: Path) -> None:
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    argv = bwrap.build_argv(Path("/b"), layout(rootfs=tmp_path), ["true"], seccomp_fd=5, status_fd=6)
    assert (str(tmp_path / "usr"), "/usr") in pairs(argv, "--ro-bind")
    assert ("usr/bin", "/bin") in pairs(argv, "--symlink")
    assert ("/usr", "/usr") not in pairs(argv, "--ro-bind")
