"""The sandbox for agent-written code: a hostile-snippet suite, and violations as feedback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from pathlib import Path

import pytest

from ftdojo import datafiles, repository, sandbox
from ftdojo.errors import SandboxViolation
from ftdojo.paths import sha256_file
from ftdojo.registry import get_task

CAPS = sandbox.capabilities()
needs_ns = pytest.mark.skipif(
    not (CAPS["network_isolated"] and CAPS["files_hidden"]),
    reason=f"this machine gives the sandbox no namespaces ({CAPS}); only rlimits and env scrubbing hold",
)
FAST = sandbox.Limits(wall_s=5, cpu_s=3, memory_mb=256, file_mb=4, processes=8)


def _violation(code: str, row: dict, ws: Path, limits: sandbox.Limits = FAST) -> SandboxViolation:
    with pytest.raises(SandboxViolation) as e:
        sandbox.run(code, "f", [row], ws, limits)
    return e.value


def _sealed(math_domain) -> Path:
    return repository.sealed_path(get_task("math-linear"), math_domain)


def test_benign_transform_runs_and_returns_rows_in_order(tmp_path) -> None:
    code = "import re\ndef f(row):\n    return {'n': int(re.sub('[^0-9]', '', row['s'])) * 2}\n"
    assert sandbox.run(code, "f", [{"s": f"x{i}"} for i in range(50)], tmp_path) == [{"n": 2 * i} for i in range(50)]


@needs_ns
def test_reading_the_test_split_by_path_fails(math_domain, tmp_path) -> None:
    path = _sealed(math_domain)
    assert path.exists()  # it is there for the referee...
    code = "def f(row):\n    return open(row['path']).read()\n"
    v = _violation(code, {"path": str(path)}, tmp_path)
    assert v.kind == "filesystem" and "No such file" in v.detail  # ...and not for agent code


@needs_ns
def test_searching_the_filesystem_for_answers_finds_nothing(math_domain, tmp_path) -> None:
    needle = datafiles.read_items(_sealed(math_domain))[0]["input"]
    code = (
        "import os\n"
        "SKIP = {'/proc', '/sys', '/dev', '/usr', '/lib', '/lib64', '/bin', '/sbin', '/etc', '/boot', '/snap', '/var/lib'}\n"
        "def f(row):\n"
        "    needle, hits, seen = row['needle'][::-1].encode(), [], 0\n"
        "    for root, dirs, files in os.walk('/'):\n"
        "        dirs[:] = [d for d in dirs if os.path.join(root, d) not in SKIP and d not in ('.git', '.venv', 'site-packages')]\n"
        "        for name in files:\n"
        "            p = os.path.join(root, name)\n"
        "            try:\n"
        "                if os.path.getsize(p) < 2_000_000 and needle in open(p, 'rb').read():\n"
        "                    hits.append(p)\n"
        "                seen += 1\n"
        "            except OSError:\n"
        "                pass\n"
        "    return {'hits': hits, 'seen': seen}\n"
    )
    # A whole-disk walk: generous limits, since on a shared 2-core machine after the Ray tier it has taken over 60 s.
    out = sandbox.run(code, "f", [{"needle": needle[::-1]}], tmp_path, sandbox.Limits(wall_s=240, cpu_s=200))[0]
    assert out["seen"] > 0 and out["hits"] == []


@needs_ns
def test_opening_a_socket_fails_even_to_loopback(tmp_path) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        for host, port in (("127.0.0.1", srv.getsockname()[1]), ("1.1.1.1", 443)):
            code = "import socket\ndef f(row):\n    socket.create_connection((row['h'], row['p']), timeout=2)\n"
            assert _violation(code, {"h": host, "p": port}, tmp_path).kind == "network"
    finally:
        srv.close()


def _sandbox_processes() -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if f"Uid:\t{sandbox.NOBODY}\t" in (p / "status").read_text():
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def test_fork_bomb_is_contained_and_leaves_no_process(tmp_path) -> None:
    v = _violation("import os\ndef f(row):\n    while True:\n        os.fork()\n", {}, tmp_path)
    assert v.kind in {"processes", "timeout"}
    if os.geteuid() == 0:
        assert _sandbox_processes() == []


def test_infinite_loop_is_killed_on_the_wall_clock(tmp_path) -> None:
    v = _violation("def f(row):\n    while True:\n        pass\n", {}, tmp_path, sandbox.Limits(wall_s=2, cpu_s=30))
    assert v.kind == "timeout"


def test_cpu_limit_holds_below_the_wall_clock(tmp_path) -> None:
    v = _violation("def f(row):\n    while True:\n        pass\n", {}, tmp_path, sandbox.Limits(wall_s=20, cpu_s=1))
    assert v.kind == "cpu_time"


def test_allocating_beyond_the_limit_fails(tmp_path) -> None:
    v = _violation("def f(row):\n    return len(bytearray(8 << 30))\n", {}, tmp_path)
    assert v.kind == "memory"


def test_huge_file_is_capped(tmp_path) -> None:
    code = "def f(row):\n    with open('big.bin', 'wb') as fh:\n        fh.write(b'0' * (64 << 20))\n"
    v = _violation(code, {}, tmp_path)
    assert v.kind == "file_size"
    sizes = [p.stat().st_size for p in tmp_path.rglob("big.bin")]
    assert sizes and max(sizes) <= FAST.file_mb << 20


def test_api_keys_are_not_in_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    code = (
        "import os, glob\n"
        "def f(row):\n"
        "    found = dict(os.environ)\n"
        "    for p in glob.glob('/proc/[0-9]*/environ'):\n"
        "        try:\n"
        "            found[p] = open(p, 'rb').read().decode(errors='replace')\n"
        "        except OSError:\n"
        "            pass\n"
        "    return found\n"
    )
    out = json.dumps(sandbox.run(code, "f", [{}], tmp_path))
    assert "sk-very-secret" not in out and "RAY_ADDRESS" not in out


def test_raw_data_cannot_be_modified(math_domain, tmp_path) -> None:
    raw = next(p for p in repository.raw_dir(math_domain).iterdir() if p.is_file())
    before = sha256_file(raw)
    v = _violation("def f(row):\n    open(row['path'], 'a').write('poison')\n", {"path": str(raw)}, tmp_path)
    assert v.kind == "filesystem" and sha256_file(raw) == before


@pytest.mark.ray
@needs_ns
def test_the_ray_cluster_is_unreachable(ray_cluster, tmp_path) -> None:
    host, port = ray_cluster.get_runtime_context().gcs_address.rsplit(":", 1)
    code = (
        "import os, socket\n"
        "def f(row):\n"
        "    assert not os.path.exists('/tmp/ray'), 'ray session dir visible'\n"
        "    socket.create_connection((row['h'], int(row['p'])), timeout=2)\n"
    )
    assert _violation(code, {"h": host, "p": port}, tmp_path).kind == "network"


def test_a_hostile_snippet_does_not_affect_a_concurrent_run(tmp_path) -> None:
    victim, attacker = tmp_path / "victim", tmp_path / "attacker"
    victim.mkdir()
    (victim / "keep.txt").write_text("intact")
    hostile = (
        "import os\n"
        "def f(row):\n"
        "    for p in (row['victim'] + '/keep.txt', row['victim'] + '/new.txt'):\n"
        "        try:\n"
        "            open(p, 'w').write('pwned')\n"
        "        except OSError:\n"
        "            pass\n"
        "    while True:\n"
        "        os.fork()\n"
    )
    benign = "def f(row):\n    return sum(range(row['n']))\n"
    results: dict[str, object] = {}

    def attack() -> None:
        try:
            sandbox.run(hostile, "f", [{"victim": str(victim)}], attacker, FAST)
        except SandboxViolation as e:
            results["attacker"] = e.kind

    t = threading.Thread(target=attack)
    t.start()
    results["victim"] = sandbox.run(benign, "f", [{"n": n} for n in range(200)], victim)
    t.join()
    assert results["victim"] == [sum(range(n)) for n in range(200)]
    assert results["attacker"] in {"processes", "timeout"}
    assert (victim / "keep.txt").read_text() == "intact" and not (victim / "new.txt").exists()


def test_sandboxed_transform_op_in_a_recipe_and_violation_as_feedback(math_domain, tmp_path) -> None:
    from actors.curator import Curator
    from ftdojo.dojo import DojoEnv, EnvHandle
    from ftdojo.messages import Budget, DataRecipe, Plan, SourceMapping, TrainConfig

    env = EnvHandle(DojoEnv("math-linear", "tiny-random", Budget()))
    keep_linear = (
        "def transform(row):\n"
        "    if row['form'] != 'ax+b=c':\n"
        "        return None\n"
        "    return {**row, 'prompt': 'Solve for x: ' + row['equation']}\n"
    )
    src = SourceMapping(source="algebra_drills", prompt="{prompt}", answer="{solution}", transform=keep_linear)
    plan = Plan(plan_id="t0", hypothesis="h", recipe=DataRecipe(sources=[src]), train=TrainConfig())
    data = asyncio.run(Curator(env, str(tmp_path)).curate(plan))
    assert data.n_examples > 0 and data.dropped["transform"] > 0
    assert all(s.input.startswith("Solve for x: ") for s in data.samples)
    net = src.model_copy(update={"transform": "import socket\ndef transform(row):\n    socket.create_connection(('1.1.1.1', 80), timeout=1)\n"})
    bad = plan.model_copy(update={"plan_id": "t1", "recipe": DataRecipe(sources=[net])})
    with pytest.raises(SandboxViolation) as e:
        asyncio.run(Curator(env, str(tmp_path)).curate(bad))
    assert e.value.kind in ({"network"} if CAPS["network_isolated"] else {"network", "exception"})
