"""A sandbox for agent-written Python (data transforms, filters, verifiers).

``run(code, entry, rows, workspace)`` applies ``entry(row)`` from ``code`` to
each row in a separate process and returns the results, or raises
``SandboxViolation`` naming what the code tried (``network``,
``filesystem``, ``memory``, ``disk``, ``timeout``, ``cpu_time``,
``file_size``, ``processes``, ``exception``, ``bad_output``). The run that
called it goes on: the violation becomes a failed iteration with that error.

What is enforced, layer by layer (``capabilities()`` probes this machine):

* always: a fresh interpreter (``python -I -S``: no site-packages on its
  path) running ``ftdojo/sandbox_boot.py``, which imports nothing but the
  standard library; a scrubbed environment (no API keys, no ``RAY_ADDRESS``);
  no inherited file descriptors; resource limits (CPU seconds, address space,
  file size, open files, processes, no core dumps); a wall timeout that kills
  the whole sandbox. Results and status come back only through pipes this
  process reads, each capped in size (``output_mb``); the status is composed
  by the boot process from what it observed, never from the agent's prints;
  nothing is read back from a path the agent's code could have replaced. The
  job folder is removed after every call;
* where Linux namespaces are available (root, or unprivileged user
  namespaces): a new network namespace (only a loopback that is down: no
  network, no Ray cluster, no other run's ports), a new PID namespace (a fork
  bomb dies with its PID 1), and a private mount namespace in which every
  tree holding task data or installed code is covered by an empty tmpfs:
  ``FTDOJO_HOME`` (raw data, sealed test splits, every run's files, caches),
  the model cache, the project's own folder and virtual environment, every
  site-packages and dist-packages folder, the repository's ``tasks/``, the
  folders on ``FTDOJO_TASKS`` and every file of every user task (spec, items,
  sources), the user's home, ``/tmp`` (Ray's session sockets), ``/var/tmp``,
  ``/dev/shm`` and ``/run``. Only the interpreter's standard library is bound
  back, read-only. The code works in a fresh tmpfs of ``disk_mb`` megabytes
  and ``files`` inodes (the disk quota), gone when it exits;
* when started as root: the code runs as ``nobody`` (uid 65534), so the
  process-count limit applies and every root-owned file outside the
  workspace is read-only.

Without namespaces only the first layer holds (agent code could then extend
its own ``sys.path``, read files its user can read, and fill the disk up to
the per-file limit times the files it creates) and ``capabilities()`` says
so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import site
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from ftdojo.errors import SandboxViolation, UserError

NOBODY = 65534
KINDS = ("network", "filesystem", "memory", "disk", "timeout", "cpu_time", "file_size", "processes", "exception", "bad_output")
_BOOT = Path(__file__).with_name("sandbox_boot.py")


@dataclass(frozen=True)
class Limits:
    wall_s: float = 30.0
    cpu_s: int = 20
    memory_mb: int = 1024
    file_mb: int = 16
    disk_mb: int = 256
    """Total the code may write (a tmpfs quota; needs namespaces)."""
    files: int = 4096
    """Files and folders the code may create (needs namespaces)."""
    output_mb: int = 128
    """Cap on the results the caller reads back."""
    processes: int = 16
    open_files: int = 64
    max_rows: int = 200_000
    namespaces: bool = True
    """Isolate with Linux namespaces where the machine allows (False: the rlimits alone, as on a machine without)."""
    libraries: bool = False
    """Bind the installed packages back read-only and put them on the path (model-written plotting code,
    scored by running it, needs pandas and matplotlib); the data, the project and the tasks stay covered,
    and ``.pth`` hooks (the project's editable install) are not run, so ftdojo itself cannot be imported."""


class UnusableWorkspace(UserError):
    """The sandbox's job folder is not usable by the user the code runs as."""


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def mount_plan(libraries: bool = False) -> dict[str, list[str]]:
    """What the sandbox covers (``hide``), binds back read-only (``keep``: the standard library, and with
    ``libraries`` the installed packages, also listed as ``path``) and covers again inside what it bound
    back (``hide_inner``: installed packages, unless ``libraries``)."""
    from ftdojo import paths, registry

    cands = [paths.home(), paths.models_dir(), Path.home(), Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path("/run")]
    cands += [Path(os.environ["TMPDIR"])] if os.environ.get("TMPDIR") else []
    cands += [Path(sys.prefix), _project_root(), *registry.data_dirs()]
    packages = [*site.getsitepackages(), site.getusersitepackages(), "/usr/lib/python3/dist-packages"]
    packages += [sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})[k] for k in ("purelib", "platlib")]
    packages += [f"/usr/local/lib/python{sys.version_info.major}.{sys.version_info.minor}/dist-packages"]
    keep = [os.path.realpath(os.path.dirname(os.__file__))]  # the standard library (lib-dynload inside)

    def dirs(ps: list[Any]) -> list[str]:
        out: list[str] = []
        for p in ps:
            r = os.path.realpath(p)
            if r != "/" and os.path.isdir(r) and r not in out:
                out.append(r)
        return out

    inner = dirs(packages)
    # A tree that holds the standard library is covered and the library bound back; packages
    # elsewhere are covered outright.
    if libraries:
        hide = dirs(cands)
        hide = [p for p in hide if not _under(p, [h for h in hide if h != p])]
        libs = [p for p in inner if not _under(p, keep)]  # bound back where a covered tree holds them
        return {"hide": hide, "keep": keep + libs, "hide_inner": [], "path": inner}
    hide = dirs(cands) + [p for p in inner if not _under(p, keep)]
    hide = [p for p in hide if not _under(p, [h for h in hide if h != p])]  # a covered tree's subfolders are gone already
    return {"hide": hide, "keep": keep, "hide_inner": [p for p in inner if _under(p, keep)], "path": []}


def _under(p: str, roots: list[str]) -> bool:
    return any(p == r or p.startswith(r + "/") for r in roots)


def run(code: str, entry: str, rows: list[dict[str, Any]], workspace: str | Path, limits: Limits = Limits()) -> list[Any]:
    """Apply ``entry(row)`` from ``code`` to every row inside the sandbox; results in row order."""
    if len(rows) > limits.max_rows:
        raise SandboxViolation("bad_output", f"{len(rows)} rows exceed the sandbox limit of {limits.max_rows}")
    ws = Path(workspace).resolve()
    try:
        ws.mkdir(parents=True, exist_ok=True)
        job = Path(tempfile.mkdtemp(prefix="sbx-", dir=ws))
    except OSError as e:
        raise UnusableWorkspace(f"sandbox workspace {ws}: {e.strerror}; give the run a writable workspace (--out or FTDOJO_HOME)") from None
    try:
        if os.geteuid() == 0:
            os.chown(job, NOBODY, NOBODY)
        job_cfg = {"job": str(job), "code": code, "entry": entry, "rows": rows, "limits": asdict(limits), **mount_plan(limits.libraries)}
        status, lines = _exchange(json.dumps(job_cfg, default=str).encode(), job, limits)
    finally:
        shutil.rmtree(job, ignore_errors=True)  # fd-based on Linux: links the code left are removed, not followed
    if status.get("ok") is True:
        return _results(lines, len(rows))
    kind = status.get("kind")
    if kind == "workspace":
        raise UnusableWorkspace(f"sandbox workspace {job}: {_why_unusable(job)}; put the run's workspace (--out or FTDOJO_HOME) "
                                f"under folders that uid {NOBODY} may enter (chmod o+x), or run where namespaces are available")
    raise SandboxViolation(kind if kind in KINDS else "exception", str(status.get("detail", ""))[:300])


def _why_unusable(job: Path) -> str:
    for p in [*reversed(job.parents), job]:
        try:
            mode = p.stat().st_mode
        except OSError:
            continue
        if not mode & stat.S_IXOTH and p != job:
            return f"{p} is mode {stat.filemode(mode)}, so the sandbox user cannot reach it"
    return "the sandbox user cannot enter it"


def _exchange(job_cfg: bytes, job: Path, limits: Limits) -> tuple[dict[str, Any], list[bytes]]:
    """Start the boot process, hand it the job on stdin, and read its status line and results from
    stdout (at most ``output_mb`` plus the status) and at most 64 KiB of its stderr."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(job), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _BOOT.read_text()],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=str(job), env=env, close_fds=True, start_new_session=True,
    )
    cap = (limits.output_mb << 20) + (1 << 16)
    got: dict[str, bytes] = {}
    over: list[str] = []

    def kill() -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass

    def read(name: str, stream: IO[bytes], limit: int, fatal: bool) -> None:
        buf = bytearray()
        while chunk := stream.read1(1 << 16):  # type: ignore[attr-defined]
            if len(buf) + len(chunk) > limit:
                if fatal:
                    over.append(name)
                    kill()
                    break
                chunk = chunk[: limit - len(buf)]
            buf += chunk
        got[name] = bytes(buf)

    def feed() -> None:
        try:
            assert proc.stdin is not None
            proc.stdin.write(job_cfg)
            proc.stdin.close()
        except OSError:
            pass  # it died before reading its job; its exit says why

    threads = [threading.Thread(target=feed, daemon=True),
               threading.Thread(target=read, args=("out", proc.stdout, cap, True), daemon=True),
               threading.Thread(target=read, args=("err", proc.stderr, 1 << 16, False), daemon=True)]
    for t in threads:
        t.start()
    try:
        proc.wait(timeout=limits.wall_s + 10)
    except subprocess.TimeoutExpired:
        kill()
        proc.wait()
        raise SandboxViolation("timeout", f"no answer within {limits.wall_s:g} s wall time") from None
    finally:
        for t in threads[1:]:
            t.join(timeout=5)
    if over:
        raise SandboxViolation("bad_output", f"the sandbox wrote more than the {limits.output_mb} MB output limit")
    first, *rest = got.get("out", b"").split(b"\n") or [b""]
    try:
        status = json.loads(first)
    except ValueError:
        status = None
    if not isinstance(status, dict) or "ok" not in status:
        err = got.get("err", b"").decode(errors="replace").strip().splitlines()
        return {"ok": False, "kind": "exception", "detail": err[-1] if err else "no report"}, []
    return status, [ln for ln in rest if ln]


def _results(lines: list[bytes], n: int) -> list[Any]:
    if len(lines) != n:
        raise SandboxViolation("bad_output", f"{len(lines)} results for {n} rows")
    try:
        return [json.loads(ln)["r"] for ln in lines]
    except (ValueError, KeyError, TypeError):
        raise SandboxViolation("bad_output", "a result that is not a JSON frame") from None


def capabilities() -> dict[str, bool]:
    """What isolation this machine gives the sandbox (runs a trivial snippet)."""
    from ftdojo import paths

    plan = mount_plan()
    with tempfile.TemporaryDirectory(prefix="ftdojo-sbx-probe-") as d:
        probe = (
            "import os, socket\n"
            "def f(row):\n"
            "    s = socket.socket(); s.settimeout(1)\n"
            "    net = s.connect_ex(('127.0.0.1', row['port'])) == 0\n"
            "    st = os.statvfs('.')\n"
            "    return {'net': net, 'home': os.path.exists(row['home']), 'uid': os.getuid(),\n"
            "            'code': [p for p in row['code'] if os.path.exists(p)], 'disk': st.f_blocks * st.f_frsize}\n"
        )
        import socket

        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        try:
            paths.home().mkdir(parents=True, exist_ok=True)
            installed = [str(Path(__file__).resolve())] + [os.path.join(p, sorted(os.listdir(p))[0]) for p in plan["hide_inner"] if os.listdir(p)]
            row = {"port": srv.getsockname()[1], "home": str(paths.home()), "code": installed}
            limits = Limits()
            r = run(probe, "f", [row], d, limits)[0]
        finally:
            srv.close()
    return {"network_isolated": not r["net"], "files_hidden": not r["home"], "unprivileged": r["uid"] != 0,
            "installed_code_hidden": not r["code"], "disk_quota": r["disk"] <= limits.disk_mb << 20}
