"""The bubblewrap command line, read as data: what a job can and cannot see."""

from __future__ import annotations

from pathlib import Path

from orchestrator.providers.linux import bwrap
from orchestrator.providers.linux.mounts import ResolvedMount


def layout(**kw: object) -> bwrap.Layout:
    base = {
        "workspace": Path("/run/o/ws"),
        "internal": Path("/run/o/in"),
        "etc": Path("/run/o/etc"),
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
    assert ("/run/o/etc", "/etc") in pairs(argv, "--ro-bind")
    assert not [t for _, t in pairs(argv, "--ro-bind") + pairs(argv, "--bind") if t.startswith("/etc/")]


def test_rootfs_replaces_the_host_system_view(tmp_path: Path) -> None:
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    argv = bwrap.build_argv(Path("/b"), layout(rootfs=tmp_path), ["true"], seccomp_fd=5, status_fd=6)
    assert (str(tmp_path / "usr"), "/usr") in pairs(argv, "--ro-bind")
    assert ("usr/bin", "/bin") in pairs(argv, "--symlink")
    assert ("/usr", "/usr") not in pairs(argv, "--ro-bind")


def test_etc_view_copies_only_what_any_user_could_read(tmp_path: Path) -> None:
    rootfs = tmp_path / "root"
    (rootfs / "etc" / "ssl" / "certs").mkdir(parents=True)
    (rootfs / "etc" / "ssl" / "private").mkdir(mode=0o700)
    (rootfs / "etc" / "ssl" / "private" / "key.pem").write_text("SECRET")
    (rootfs / "etc" / "ssl" / "certs" / "ca.pem").write_text("public")
    (rootfs / "etc" / "ld.so.cache").write_text("cache")
    hidden = rootfs / "etc" / "localtime"
    hidden.write_text("not for you")
    hidden.chmod(0o600)
    (rootfs / "etc" / "shadow").write_text("root:hash")
    etc = bwrap.build_etc(tmp_path / "run", rootfs)
    files = sorted(str(p.relative_to(etc)) for p in etc.rglob("*") if p.is_file())
    assert files == ["group", "hostname", "hosts", "ld.so.cache", "passwd", "ssl/certs/ca.pem"]
    assert "sandbox:x:1000" in (etc / "passwd").read_text()
    assert bwrap.build_etc(tmp_path / "run", rootfs) == etc  # reused while the sources are unchanged
