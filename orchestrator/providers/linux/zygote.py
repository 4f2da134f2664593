"""A warm Python interpreter that runs each program in fresh namespaces of its own.

Started by ``warm.py`` as ``python3 /.orchestrator/zygote.py`` in an outer
bubblewrap sandbox (no network, read-only system, its own uid and cgroup) that
keeps CAP_SYS_ADMIN in its user namespace and a seccomp filter that still lets
it call mount(2) and unshare(2). Standard library only.

Descriptor 0 is a SOCK_SEQPACKET socket to the host. At start, after running
the whole path once with an empty program: {"ready": pid} or {"error"}. Then
one request at a time:

  in:   {"source", "path", "argv", "env", "cwd", "rlimits": [[kind, soft, hard]],
         "tmp_bytes", "disk_bytes"} with the program's stdout and stderr attached
  out:  {"status": wait status, "cpu_s", "maxrss_kb"}  or  {"error": message}

For each request this process forks a child that unshares mount, pid, ipc, uts
and network namespaces and forks the program, pid 1 of the new pid namespace.
The program mounts a fresh /proc, /tmp, /workspace and /.orchestrator (so
nothing of an earlier program is visible), sets its rlimits, drops every
capability, loads the job's full seccomp filter (``seccomp.bpf``) on top of
this sandbox's, and only then runs the source, as ``python3 PATH`` would.
When it exits, the kernel kills whatever it left in its pid namespace.
This process never runs a program's code itself.
"""

import ctypes
import gc
import json
import os
import resource
import socket
import sys
import traceback

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = (
    0x00020000, 0x04000000, 0x08000000, 0x20000000, 0x40000000,
)  # fmt: skip
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18,
)  # fmt: skip
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 4, 38, 22, 47, 4
SECCOMP_MODE_FILTER = 2
CAPABILITY_VERSION_3 = 0x20080522
MAX_REQUEST = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))
# Imported once here, so a program that imports them pays nothing; none holds per-process state
# that would be shared between programs (``random`` is reseeded in each one).
PRELOAD = ("collections", "functools", "itertools", "math", "re", "string", "heapq", "bisect", "typing", "random")

LIBC = ctypes.CDLL(None, use_errno=True)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source, target, fstype, flags, data=None):
    _check(
        LIBC.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _drop_capabilities():
    _check(LIBC.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities")
    header = _CapHeader(CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(LIBC.capset(ctypes.byref(header), ctypes.byref(data)), "capset")


def _load_seccomp(program):
    _check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    fprog = _SockFprog(len(program) // 8, program)
    _check(LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def _fresh_view(request, owner):
    """The program's own filesystem: nothing from an earlier program survives in it."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # The outer sandbox's root and /dev are tmpfs shared by every program: read-only here, with
    # fresh instances of what a program may write (/dev/shm, /dev/pts) and of /proc.
    tmpfs = MS_NOSUID | MS_NODEV  # bubblewrap's flags for both, which a remount must keep
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | tmpfs)
    _mount(None, "/dev", None, MS_REMOUNT | MS_BIND | MS_RDONLY | tmpfs)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount("tmpfs", "/dev/shm", "tmpfs", tmpfs, f"size={int(request['tmp_bytes'])},mode=1777")
    _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    _mount("tmpfs", "/tmp", "tmpfs", tmpfs, f"size={int(request['tmp_bytes'])},mode=1777")
    uid, gid = owner
    _mount("tmpfs", "/workspace", "tmpfs", tmpfs, f"size={int(request['disk_bytes'])},mode=755,uid={uid},gid={gid}")
    internal = os.path.dirname(request["path"])
    _mount("tmpfs", internal, "tmpfs", tmpfs, "size=8m,mode=755")
    with open(request["path"], "w", encoding="utf-8") as handle:
        handle.write(request["source"])
    os.chmod(request["path"], 0o644)
    _mount(None, internal, None, MS_REMOUNT | MS_BIND | MS_RDONLY | tmpfs)


def _become_program(request, out_fd, err_fd, setup_fd, seccomp_program):
    """In the new pid namespace, as its pid 1; never returns. A set-up failure is written to
    ``setup_fd``, which closes when the program's own code starts."""
    try:
        LIBC.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # an ordinary process again, as a fresh interpreter is
        _fresh_view(request, (os.getuid(), os.getgid()))
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.closerange(3, setup_fd)
        os.closerange(setup_fd + 1, 1 << 16)
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")  # under memory pressure the program goes first, never this server
        for kind, soft, hard in request["rlimits"]:
            resource.setrlimit(kind, (soft, hard))
        _drop_capabilities()
        _load_seccomp(seccomp_program)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
    except BaseException as exc:  # noqa: BLE001 - reported to the middle process
        os.write(setup_fd, f"{type(exc).__name__}: {exc}".encode()[:4000])
        os._exit(125)
    os.close(setup_fd)
    os._exit(_run(request))


def _run(request):
    """Run the source as ``python3 PATH`` runs a script; the exit code."""
    import types

    if "random" in sys.modules:
        sys.modules["random"].seed()
    path = request["path"]
    sys.argv = list(request["argv"])
    sys.path[0] = os.path.dirname(path)
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    code = 0
    try:
        exec(compile(request["source"], path, "exec"), main.__dict__)
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException as exc:  # noqa: BLE001 - what the interpreter would print, from the program's frame
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        code = 130 if isinstance(exc, KeyboardInterrupt) else 1
    try:
        import threading

        threading._shutdown()  # noqa: SLF001 - wait for non-daemon threads, as interpreter exit does
        import atexit

        atexit._run_exitfuncs()  # noqa: SLF001
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - a closed or broken stream: nothing more to say
            code = code or 120
    return code


def _exit_code(exc):
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    try:
        sys.stderr.write(f"{exc.code}\n")
    except BaseException:  # noqa: BLE001 - as the interpreter: the message is best effort
        pass
    return 1


def _launch(request, out_fd, err_fd, seccomp_program):
    """The middle process: new namespaces, then the program as their pid 1; how it ended."""
    _check(LIBC.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET), "unshare")
    setup_r, setup_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(setup_r)
        _become_program(request, out_fd, err_fd, setup_w, seccomp_program)
    for fd in (setup_w, out_fd, err_fd):
        os.close(fd)
    failure = _read_to_end(setup_r)
    _, status, usage = os.wait4(pid, 0)
    if failure:
        raise RuntimeError(f"cannot start the program: {failure.decode(errors='replace')}")
    return {"status": status, "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss}


def _read_to_end(fd):
    """Everything until the writers are gone (exited, or closed at exec); closes ``fd``."""
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    os.close(fd)
    return data


def run_program(request, out_fd, err_fd, seccomp_program):
    """One program, from a forked middle process; its report, or {"error"}. Closes both descriptors."""
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(report_r)
            report = _launch(request, out_fd, err_fd, seccomp_program)
        except BaseException as exc:  # noqa: BLE001 - reported, never raised into the server's loop
            report = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(report_w, json.dumps(report).encode())
        os._exit(0)
    for fd in (report_w, out_fd, err_fd):
        os.close(fd)
    data = _read_to_end(report_r)
    os.waitpid(pid, 0)
    try:
        return json.loads(data)
    except ValueError:
        return {"error": "the middle process died"}


def self_test(seccomp_program):
    """The whole path once with an empty program, so a host that refuses any step is known at start."""
    request = {
        "source": "",
        "path": os.path.join(HERE, "self-test"),
        "argv": ["self-test"],
        "env": {},
        "cwd": "/workspace",
        "rlimits": [],
        "tmp_bytes": 1 << 20,
        "disk_bytes": 1 << 20,
    }
    null = os.open(os.devnull, os.O_WRONLY)
    report = run_program(request, null, os.dup(null), seccomp_program)
    if "error" in report:
        return report["error"]
    return None if report["status"] == 0 else f"the empty program ended with status {report['status']}"


def serve(ctl, seccomp_program):
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(ctl, MAX_REQUEST, 2)
        except OSError:
            return
        if not data:
            return
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            ctl.send(json.dumps({"error": "a request needs stdout and stderr"}).encode())
            continue
        try:
            request = json.loads(data)
        except ValueError:
            for fd in fds:
                os.close(fd)
            ctl.send(json.dumps({"error": "malformed request"}).encode())
            continue
        ctl.send(json.dumps(run_program(request, fds[0], fds[1], seccomp_program)).encode())


def main():
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # nothing started here may inspect this process
    with open(os.path.join(HERE, "seccomp.bpf"), "rb") as handle:
        seccomp_program = handle.read()
    for name in PRELOAD:
        __import__(name)
    # What exists now lives as long as this process: a program's garbage collections then never
    # walk it, and never write to (so copy) the pages it shares with this server.
    gc.collect()
    gc.freeze()
    ctl = socket.socket(fileno=os.dup(0))
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    failure = self_test(seccomp_program)
    ctl.send(json.dumps({"error": failure} if failure else {"ready": os.getpid()}).encode())
    if failure is None:
        serve(ctl, seccomp_program)


if __name__ == "__main__":
    main()
