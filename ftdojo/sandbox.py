"""A sandbox for agent-written Python (data transforms, filters, verifiers).

``run(code, entry, rows, workspace)`` applies ``entry(row)`` from ``code`` to
each row in a separate process and returns the results, or raises
``SandboxViolation`` naming what the code tried (``network``,
``filesystem``, ``memory``, ``timeout``, ``cpu_time``, ``file_size``,
``processes``, ``exception``, ``bad_output``). The run that called it goes
on: the violation becomes a failed iteration with that error.

What is enforced, layer by layer (``capabilities()`` probes this machine):

* always: a fresh interpreter (``python -I``) started with a scrubbed
  environment (no API keys, no ``RAY_ADDRESS``, ``HOME`` = the workspace),
  no inherited file descriptors, resource limits (CPU seconds, address
  space, file size, open files, no core dumps), and a wall timeout that kills
  the whole sandbox;
* where Linux namespaces are available (root, or unprivileged user
  namespaces): a new network namespace (only a loopback that is down: no
  network, no Ray cluster, no other run's ports), a new PID namespace (a fork
  bomb dies with its PID 1), and a private mount namespace in which
  ``FTDOJO_HOME`` (raw data, sealed test splits, every run's files, caches),
  the user's home, ``/tmp`` (Ray's session sockets), ``/var/tmp``,
  ``/dev/shm`` and ``/run`` are covered by empty tmpfs mounts, with only the
  sandbox's own workspace bound back in;
* when started as root: the code runs as ``nobody`` (uid 65534), so the
  process-count limit applies and every root-owned file outside the
  workspace is read-only.

Without namespaces only the first layer holds and ``capabilities()`` says
so; the curator records it with every sandboxed op.

The agent's code sees only the standard library (the virtual environment may
sit under a hidden directory) and its input rows, passed as JSON.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ftdojo.errors import SandboxViolation

NOBODY = 65534
_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 1, 2, 4, 8, 32
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18
KINDS = ("network", "filesystem", "memory", "timeout", "cpu_time", "file_size", "processes", "exception", "bad_output")


@dataclass(frozen=True)
class Limits:
    wall_s: float = 30.0
    cpu_s: int = 20
    memory_mb: int = 1024
    file_mb: int = 16
    processes: int = 16
    open_files: int = 64
    max_rows: int = 200_000


def hidden_paths() -> list[str]:
    from ftdojo import paths

    cands = [paths.home(), paths.models_dir(), Path.home(), Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path("/run")]
    cands += [Path(os.environ[v]) for v in ("TMPDIR",) if os.environ.get(v)]
    out: list[str] = []
    for p in cands:
        r = str(p.resolve())
        if r != "/" and Path(r).is_dir() and r not in out:
            out.append(r)
    return out


def run(code: str, entry: str, rows: list[dict[str, Any]], workspace: str | Path, limits: Limits = Limits()) -> list[Any]:
    """Apply ``entry(row)`` from ``code`` to every row inside the sandbox; results in row order."""
    if len(rows) > limits.max_rows:
        raise SandboxViolation("bad_output", f"{len(rows)} rows exceed the sandbox limit of {limits.max_rows}")
    ws = Path(workspace).resolve()
    ws.mkdir(parents=True, exist_ok=True)
    job = Path(tempfile.mkdtemp(prefix="sbx-", dir=ws))
    (job / "code.py").write_text(code)
    with open(job / "in.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r, default=str) + "\n")
    if os.geteuid() == 0:
        for p in (job, job / "code.py", job / "in.jsonl"):
            os.chown(p, NOBODY, NOBODY)
    boot = {"job": str(job), "entry": entry, "limits": asdict(limits), "hide": hidden_paths()}
    env = {"PATH": "/usr/bin:/bin", "HOME": str(job), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", "import ftdojo.sandbox as s; s._boot()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=str(job), env=env, close_fds=True, start_new_session=True,
    )
    try:
        out, err = proc.communicate(json.dumps(boot).encode(), timeout=limits.wall_s + 10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise SandboxViolation("timeout", f"no answer within {limits.wall_s:g} s wall time") from None
    status = _status(out) or {"kind": "exception", "detail": (err.decode(errors="replace").strip().splitlines() or ["no report"])[-1]}
    if status.get("ok"):
        return _read_results(job / "out.jsonl", len(rows), limits)
    kind = status.get("kind") if status.get("kind") in KINDS else "exception"
    raise SandboxViolation(kind, str(status.get("detail", ""))[:300])


def _read_results(path: Path, n: int, limits: Limits) -> list[Any]:
    try:
        lines = path.read_text().splitlines()
        results = [json.loads(ln) for ln in lines]
    except (OSError, ValueError) as e:
        raise SandboxViolation("bad_output", f"unreadable output: {type(e).__name__}") from None
    if len(results) != n:
        raise SandboxViolation("bad_output", f"expected {n} results, got {len(results)}")
    return results


def _status(raw: bytes) -> dict[str, Any] | None:
    """The first status line PID 1 (or the boot process) wrote; later lines are forks' noise."""
    for line in raw.decode(errors="replace").strip().splitlines():
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if isinstance(v, dict) and "ok" in v:
            return v
    return None


# --- inside the sandbox (standard library only) ---------------------------------------


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> bool:
    import ctypes

    return _libc().unshare(ctypes.c_int(flags)) == 0


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> bool:
    import ctypes

    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    return _libc().mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) == 0


def _isolate(job: str, hide: list[str]) -> None:
    """Namespaces and mounts, done while still privileged; where they fail, limits alone hold."""
    root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    flags = _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID | (0 if root else _CLONE_NEWUSER)
    if not _unshare(flags):
        return
    if not root:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    # Keep handles on what comes back (the workspace, read-write; the interpreter's standard
    # library, read-only) before covering the hidden trees with empty tmpfs mounts.
    keep = {job: False, os.path.realpath(sys.base_prefix): True}
    fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keep}
    for p in sorted(hide, key=len):
        if os.path.isdir(p):
            _mount("tmpfs", p, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=64k,mode=0755")
    for p, readonly in keep.items():
        if not any(p == h or p.startswith(h + "/") for h in hide):
            continue  # never covered
        os.makedirs(p, exist_ok=True)
        _mount(f"/proc/self/fd/{fds[p]}", p, None, _MS_BIND)
        if readonly:
            _mount(None, p, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
    for fd in fds.values():
        os.close(fd)
    os.chdir(job)


def _limit(limits: dict[str, Any]) -> None:
    mb = 1 << 20
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mb, limits["memory_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_mb"] * mb, limits["file_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"], limits["open_files"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"], limits["processes"]))


def _classify(e: BaseException) -> str:
    if isinstance(e, MemoryError):
        return "memory"
    if isinstance(e, OSError):
        code = e.errno
        if code == errno.EFBIG:
            return "file_size"
        if code in (errno.EAGAIN, errno.ENOMEM) and isinstance(e, BlockingIOError):
            return "processes"
        net = (errno.ENETUNREACH, errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ENETDOWN)
        if code in net or type(e).__module__ == "socket" or "socket" in type(e).__name__.lower():
            return "network"
        if code in (errno.EACCES, errno.EPERM, errno.ENOENT, errno.EROFS, errno.ENOTDIR, errno.EISDIR):
            return "filesystem"
    return "exception"


_REPORT_FD = 1


def _report(kind: str | None, detail: str = "") -> None:
    msg = {"ok": True} if kind is None else {"ok": False, "kind": kind, "detail": detail}
    os.write(_REPORT_FD, (json.dumps(msg) + "\n").encode())


def _child(job: str, entry: str, limits: dict[str, Any]) -> None:
    """PID 1 of the sandbox: drop privileges, limit, run the agent's code."""
    if os.geteuid() == 0 and Path("/proc/self/uid_map").read_text().split()[:2] == ["0", "0"]:
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    global _REPORT_FD
    _REPORT_FD = os.dup(1)  # the agent's prints go to a log, not into the status channel
    log = os.open(os.path.join(job, "stdout.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    _limit(limits)
    try:
        ns: dict[str, Any] = {"__name__": "agent_code"}
        exec(compile(Path(job, "code.py").read_text(), "agent_code.py", "exec"), ns)
        fn = ns.get(entry)
        if not callable(fn):
            _report("exception", f"the code defines no function {entry!r}")
            return
        with open(Path(job, "in.jsonl")) as fin, open(Path(job, "out.jsonl"), "w") as fout:
            for line in fin:
                fout.write(json.dumps(fn(json.loads(line))) + "\n")
    except BaseException as e:  # noqa: BLE001 - everything the agent's code does wrong is reported
        _report(_classify(e), f"{type(e).__name__}: {e}")
        return
    _report(None)


def _boot() -> None:
    """Entry of the sandbox process: isolate, fork PID 1, enforce the wall clock, relay its status."""
    cfg = json.loads(sys.stdin.read())
    job, limits = cfg["job"], cfg["limits"]
    if sys.platform == "linux":
        _isolate(job, cfg["hide"])  # what held is probed by capabilities(), not reported per call
    pid = os.fork()
    if pid == 0:
        try:
            _child(job, cfg["entry"], limits)
        finally:
            os._exit(0)
    deadline_s = float(limits["wall_s"])
    fired: list[bool] = []

    def expire(*_: Any) -> None:
        fired.append(True)
        os.kill(pid, signal.SIGKILL)

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, deadline_s)
    _, status = os.waitpid(pid, 0)
    signal.setitimer(signal.ITIMER_REAL, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if fired:
            _report("timeout", f"killed after {deadline_s:g} s wall time")
        else:  # SIGKILL without the alarm: the hard CPU limit (or the kernel's OOM killer)
            kind = {signal.SIGKILL: "cpu_time", signal.SIGXCPU: "cpu_time", signal.SIGXFSZ: "file_size"}.get(sig, "exception")
            _report(kind, f"killed by {signal.Signals(sig).name} (limits: {limits['cpu_s']} CPU s, {limits['memory_mb']} MB)")



def capabilities() -> dict[str, bool]:
    """What isolation this machine gives the sandbox (runs a trivial snippet)."""
    with tempfile.TemporaryDirectory(prefix="ftdojo-sbx-probe-") as d:
        probe = (
            "import os, socket\n"
            "def f(row):\n"
            "    s = socket.socket(); s.settimeout(1)\n"
            "    net = s.connect_ex(('127.0.0.1', row['port'])) == 0\n"
            "    return {'net': net, 'home': os.path.exists(row['home']), 'uid': os.getuid()}\n"
        )
        import socket

        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        try:
            from ftdojo import paths

            paths.home().mkdir(parents=True, exist_ok=True)
            r = run(probe, "f", [{"port": srv.getsockname()[1], "home": str(paths.home())}], d)[0]
        finally:
            srv.close()
    return {"network_isolated": not r["net"], "files_hidden": not r["home"], "unprivileged": r["uid"] != 0}
