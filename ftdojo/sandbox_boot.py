"""Inside the sandbox: the program ``ftdojo.sandbox.run`` starts as ``python -I -S -c <this file's text>``.

Standard library only, and never imported by ftdojo: it runs in an interpreter
that has no site-packages on its path, so the agent's code it hosts can import
the standard library and nothing installed or project-owned.

Two processes. The *boot* process reads its job (the agent's code, the entry
name, the input rows, the limits and the mount plan) from stdin, isolates
itself (namespaces, mounts), and forks *PID 1*, which drops privileges, sets
resource limits and runs the agent's code. PID 1 sends one frame per row down
a private pipe; the boot process reads at most ``output_mb`` of it, watches the
wall clock, and is the only writer of the status line on stdout, which it
composes from what it saw (the pipe, the exit status), never from what the
agent's code printed. The agent's prints go to a log in its own workspace.
"""

import errno
import json
import os
import resource
import signal
import sys

NOBODY = 65534
WORKDIR = "/tmp/ftdojo-sandbox"
_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 1, 2, 4, 8, 32
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18
_PR_SET_DUMPABLE = 4


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags):
    import ctypes

    return _libc().unshare(ctypes.c_int(flags)) == 0


def _mount(src, target, fstype, flags, data=None):
    import ctypes

    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    return _libc().mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) == 0


def _under(p, roots):
    return any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)


def _isolate(cfg):
    """Namespaces and mounts, done while still privileged. Returns the agent's working directory: a
    fresh tmpfs of ``disk_mb`` where the mounts held, else the job folder (only the rlimits hold)."""
    job, limits = cfg["job"], cfg["limits"]
    if sys.platform != "linux" or not limits["namespaces"]:
        return job
    root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    if not _unshare(_CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID | (0 if root else _CLONE_NEWUSER)):
        return job
    if not root:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"0 {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"0 {gid} 1")
    if not _mount(None, "/", None, _MS_REC | _MS_PRIVATE):
        return job
    hide = cfg["hide"]
    # Handles on the standard library before covering what holds it, so it can be bound back read-only.
    keep = [p for p in cfg["keep"] if os.path.isdir(p) and _under(p, hide)]
    fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keep}
    for p in sorted(hide, key=len):
        if os.path.isdir(p):
            _mount("tmpfs", p, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=64k,mode=0755")
    for p in keep:
        os.makedirs(p, exist_ok=True)
        _mount(f"/proc/self/fd/{fds[p]}", p, None, _MS_BIND)
        _mount(None, p, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
        os.close(fds[p])
    for p in cfg["hide_inner"]:  # installed packages inside the standard library's tree
        if os.path.isdir(p):
            _mount("tmpfs", p, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_RDONLY, "size=4k,mode=0755")
    owner = NOBODY if root else 0
    try:
        os.makedirs(WORKDIR, exist_ok=True)
    except OSError:
        return job
    opts = f"size={limits['disk_mb']}m,nr_inodes={limits['files']},mode=0700,uid={owner},gid={owner}"
    if not _mount("tmpfs", WORKDIR, "tmpfs", _MS_NOSUID | _MS_NODEV, opts):
        return job
    return WORKDIR


def _limit(limits):
    mb = 1 << 20
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mb, limits["memory_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_mb"] * mb, limits["file_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"], limits["open_files"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"], limits["processes"]))


def _classify(e):
    if isinstance(e, MemoryError):
        return "memory"
    if isinstance(e, OSError):
        code = e.errno
        if code == errno.EFBIG:
            return "file_size"
        if code in (errno.ENOSPC, errno.EDQUOT):
            return "disk"
        if code in (errno.EAGAIN, errno.ENOMEM) and isinstance(e, BlockingIOError):
            return "processes"
        net = (errno.ENETUNREACH, errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ENETDOWN)
        if code in net or type(e).__module__ == "socket" or "socket" in type(e).__name__.lower():
            return "network"
        if code in (errno.EACCES, errno.EPERM, errno.ENOENT, errno.EROFS, errno.ENOTDIR, errno.EISDIR):
            return "filesystem"
    return "exception"


def _frame(out, obj):
    out.write(json.dumps(obj) + "\n")


def _child(cfg, workdir, w):
    """PID 1 of the sandbox: drop privileges, enter the workspace, limit, run the agent's code.
    True when every row's result and the end frame were written."""
    os.setpgid(0, 0)  # the boot process kills the agent's forks by this group
    out = os.fdopen(w, "w", buffering=1 << 16)
    try:
        if os.geteuid() == 0:
            with open("/proc/self/uid_map") as f:
                real_root = f.read().split()[:2] == ["0", "0"]
            if real_root:
                if workdir != cfg["job"]:
                    _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
        try:
            os.chdir(workdir)
            log = os.open("stdout.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as e:
            _frame(out, {"error": "workspace", "detail": f"{e.strerror}: uid {os.getuid()} cannot use {workdir}"})
            return
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)  # the agent's prints go to a log, not into any channel the caller reads
        os.dup2(log, 2)
        os.closerange(3, w)
        os.closerange(w + 1, 1 << 16)
        os.environ.clear()
        os.environ.update({"HOME": workdir, "TMPDIR": workdir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        if cfg.get("path"):  # installed packages bound back (Limits.libraries): one thread each, no display
            sys.path.extend(cfg["path"])
            os.environ.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "MPLCONFIGDIR": workdir})
        _limit(cfg["limits"])
    except OSError as e:
        _frame(out, {"error": "exception", "detail": f"sandbox set-up failed: {e}"})
        return
    code, entry, rows = cfg["code"], cfg["entry"], cfg["rows"]
    del cfg
    try:
        ns = {"__name__": "agent_code"}
        exec(compile(code, "agent_code.py", "exec"), ns)
        fn = ns.get(entry)
        if not callable(fn):
            _frame(out, {"error": "exception", "detail": f"the code defines no function {entry!r}"})
            return
        for row in rows:
            value = fn(row)
            try:
                line = json.dumps({"r": value})
            except (TypeError, ValueError) as e:
                _frame(out, {"error": "bad_output", "detail": f"{entry} returned a value JSON cannot hold: {e}"})
                return
            out.write(line + "\n")
        _frame(out, {"end": len(rows)})
        out.flush()
        return True
    except BaseException as e:  # noqa: BLE001 - everything the agent's code does wrong is reported
        try:
            _frame(out, {"error": _classify(e), "detail": f"{type(e).__name__}: {e}"})
            out.flush()
        except BaseException:  # noqa: BLE001 - a closed channel: the boot process reports what it saw
            pass


def _status(kind, detail=""):
    return {"ok": False, "kind": kind, "detail": detail[:300]}


def _verdict(frames, n, clean_exit):
    """The status line from PID 1's frames and exit: ok only with one value per row, the end frame
    last, no error frame anywhere, and a clean exit; otherwise the first error seen."""
    results, end = [], None
    for raw in frames:
        try:
            f = json.loads(raw)
        except ValueError:
            return _status("bad_output", "the result channel held a line that is not JSON"), []
        if not isinstance(f, dict):
            return _status("bad_output", "the result channel held a frame that is not an object"), []
        if "error" in f:
            return _status(str(f["error"]), str(f.get("detail", ""))), []
        if end is not None:
            return _status("bad_output", "frames after the end of the results"), []
        if "end" in f:
            end = f["end"]
        elif "r" in f:
            results.append(raw)
        else:
            return _status("bad_output", "a result frame without a value"), []
    if end is None or not clean_exit:
        return _status("bad_output", f"the code stopped after {len(results)} of {n} rows without a report"), []
    if len(results) != n or end != n:
        return _status("bad_output", f"{len(results)} results for {n} rows"), []
    return {"ok": True, "n": n}, results


def main():
    cfg = json.loads(sys.stdin.buffer.read())
    limits = cfg["limits"]
    workdir = _isolate(cfg)
    try:  # other processes of this user (the agent's, where it is not dropped to nobody) cannot reach our fds
        _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except Exception:  # noqa: BLE001 - not on this platform
        pass
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            code = 0 if _child(cfg, workdir, w) else 1
        finally:
            os._exit(code)
    os.close(w)
    fired = []

    def kill(*_):
        for target in (lambda: os.kill(pid, signal.SIGKILL), lambda: os.killpg(pid, signal.SIGKILL)):
            try:
                target()
            except OSError:
                pass

    def expire(*_):
        fired.append(True)
        kill()

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(limits["wall_s"]))
    cap, got, chunks, overflow = limits["output_mb"] << 20, 0, [], False
    while True:
        chunk = os.read(r, 1 << 16)
        if not chunk:
            break
        got += len(chunk)
        if got > cap:
            overflow = True
            kill()
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    signal.setitimer(signal.ITIMER_REAL, 0)
    kill()  # stragglers the agent forked (without a PID namespace they outlive PID 1)
    results = []
    if overflow:
        verdict = _status("bad_output", f"results exceed the {limits['output_mb']} MB output limit")
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if fired:
            verdict = _status("timeout", f"killed after {limits['wall_s']:g} s wall time")
        else:  # SIGKILL without the alarm: the hard CPU limit (or the kernel's OOM killer)
            kind = {signal.SIGKILL: "cpu_time", signal.SIGXCPU: "cpu_time", signal.SIGXFSZ: "file_size"}.get(sig, "exception")
            verdict = _status(kind, f"killed by {signal.Signals(sig).name} (limits: {limits['cpu_s']} CPU s, {limits['memory_mb']} MB)")
    else:
        clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        verdict, results = _verdict(b"".join(chunks).decode(errors="replace").splitlines(), len(cfg["rows"]), clean)
    verdict["isolated"] = workdir != cfg["job"]
    out = sys.stdout.buffer
    out.write((json.dumps(verdict) + "\n").encode())
    for line in results:
        out.write((line + "\n").encode())
    out.flush()


if __name__ == "__main__":
    main()
