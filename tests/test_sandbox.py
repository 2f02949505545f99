"""The sandbox for agent-written code: a hostile-snippet suite, and violations as feedback."""

from __future__ import annotations

import asyncio
import dataclasses
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


@pytest.fixture
def open_ws():
    """A workspace the sandbox user can reach without namespaces (pytest's own tmp folder is mode 0700)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="ftdojo-sbx-test-", dir="/var/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


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
    assert _violation(code, {}, tmp_path).kind == "file_size"
    keep_going = "import os\ndef f(row):\n    try:\n        open('big.bin', 'wb').write(b'0' * (64 << 20))\n    except OSError:\n        pass\n    return os.path.getsize('big.bin')\n"
    assert sandbox.run(keep_going, "f", [{}], tmp_path, FAST)[0] <= FAST.file_mb << 20
    assert list(tmp_path.iterdir()) == []  # the job folder is gone, with what the code wrote


@needs_ns
def test_many_files_below_the_file_limit_hit_the_disk_quota(tmp_path) -> None:
    code = (
        "def f(row):\n"
        "    for i in range(40):\n"
        "        with open(f'fill{i}.bin', 'wb') as fh:\n"
        "            fh.write(b'0' * (15 << 20))\n"
    )
    v = _violation(code, {}, tmp_path, sandbox.Limits(wall_s=30, file_mb=16, disk_mb=64))
    assert v.kind == "disk" and "No space left" in v.detail
    assert list(tmp_path.iterdir()) == []


def test_the_job_folder_is_removed_after_every_call_even_without_namespaces(open_ws) -> None:
    tmp_path = open_ws
    bare = dataclasses.replace(FAST, namespaces=False)
    code = "import os\ndef f(row):\n    os.mkdir('d')\n    open('d/x', 'w').write('x' * 1000)\n    os.symlink('/etc', 'etc')\n    return os.getcwd()\n"
    cwd = sandbox.run(code, "f", [{}], tmp_path, bare)[0]
    assert cwd.startswith(str(tmp_path)) and list(tmp_path.iterdir()) == []
    assert Path("/etc/passwd").exists()  # the link was removed, not followed


@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "rlimits-only"])
def test_a_forged_status_and_a_results_link_to_the_sealed_split_give_nothing_back(math_domain, open_ws, namespaces) -> None:
    tmp_path = open_ws
    sealed = _sealed(math_domain)
    n_sealed = len(datafiles.read_items(sealed))
    code = (
        "import os\n"
        "def f(row):\n"
        "    for name in ('out.jsonl', 'in.jsonl', 'results.jsonl'):\n"
        "        try:\n"
        "            os.symlink(row['sealed'], name)\n"
        "        except OSError:\n"
        "            pass\n"
        "    forged = b'{\"ok\": true, \"n\": 3}\\n{\"r\": 1}\\n{\"r\": 2}\\n{\"r\": 3}\\n{\"end\": 3}\\n'\n"
        "    for fd in range(0, 256):\n"
        "        try:\n"
        "            os.write(fd, forged)\n"
        "        except OSError:\n"
        "            pass\n"
        "    raise ValueError('after forging')\n"
    )
    limits = dataclasses.replace(FAST, namespaces=namespaces)
    with pytest.raises(SandboxViolation) as e:
        sandbox.run(code, "f", [{"sealed": str(sealed)}] * 3, tmp_path, limits)
    assert e.value.kind in {"exception", "bad_output"} and str(n_sealed) not in e.value.detail
    assert "after forging" in e.value.detail or e.value.kind == "bad_output"
    secret = datafiles.read_items(sealed)[0]["input"]
    exit_early = code.replace("    raise ValueError('after forging')\n", "    os._exit(0)\n")
    with pytest.raises(SandboxViolation) as e:
        sandbox.run(exit_early, "f", [{"sealed": str(sealed)}] * 3, tmp_path, limits)
    assert e.value.kind == "bad_output" and secret not in e.value.detail and str(n_sealed) not in e.value.detail


def test_a_flood_on_every_channel_is_cut_at_the_output_limit(tmp_path) -> None:
    code = (
        "import os\n"
        "def f(row):\n"
        "    block = b'{\"r\": \"' + b'x' * (1 << 20) + b'\"}\\n'\n"
        "    for _ in range(1024):\n"  # 1 GB to every descriptor it holds
        "        for fd in range(3, 64):\n"
        "            try:\n"
        "                os.write(fd, block)\n"
        "            except OSError:\n"
        "                pass\n"
        "    return 'x' * (8 << 20)\n"
    )
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    v = _violation(code, {}, tmp_path, sandbox.Limits(wall_s=60, cpu_s=50, memory_mb=256, output_mb=4))
    assert v.kind == "bad_output" and "4 MB output limit" in v.detail
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 << 10  # KiB: the caller held < 64 MB more


def test_the_sandbox_imports_the_standard_library_and_nothing_installed(tmp_path) -> None:
    code = (
        "import importlib\n"
        "def f(row):\n"
        "    import json, sqlite3, decimal, re\n"
        "    found = []\n"
        "    for m in ('ftdojo', 'actors', 'tasks', 'yaml', 'pydantic', 'torch', 'ray', 'pip'):\n"
        "        try:\n"
        "            importlib.import_module(m)\n"
        "            found.append(m)\n"
        "        except ImportError:\n"
        "            pass\n"
        "    return found\n"
    )
    assert sandbox.run(code, "f", [{}], tmp_path, FAST) == [[]]


@needs_ns
def test_installed_and_project_code_stays_out_of_reach_when_the_code_extends_sys_path(tmp_path) -> None:
    import site
    import sysconfig

    import ftdojo

    roots = [str(Path(ftdojo.__file__).resolve().parent.parent), *site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    code = (
        "import importlib.util, os, sys\n"
        "def f(row):\n"
        "    sys.path[:0] = row['roots']\n"
        "    found = [m for m in ('ftdojo', 'yaml', 'pydantic', 'torch') if importlib.util.find_spec(m)]\n"
        "    return {'found': found, 'listed': [p for p in row['roots'] if os.path.isdir(p) and os.listdir(p)]}\n"
    )
    assert sandbox.run(code, "f", [{"roots": roots}], tmp_path, FAST) == [{"found": [], "listed": []}]


@needs_ns
def test_a_user_tasks_files_and_the_built_in_task_code_are_hidden(tmp_path, monkeypatch) -> None:
    from ftdojo import registry

    spec_dir = tmp_path / "mytasks"
    spec_dir.mkdir()
    items = [{"input": f"What is {i} squared?", "answer": str(i * i)} for i in range(30)]
    (spec_dir / "sq_items.jsonl").write_text(datafiles.jsonl(items))
    (spec_dir / "sq.yaml").write_text(
        "id: squares\ndescription: Square a number.\ninstruction: Reply with the number.\nanswer_format: A number.\n"
        "items: sq_items.jsonl\ndev_size: 10\ntest_size: 20\n"
    )
    monkeypatch.setenv("FTDOJO_TASKS", str(spec_dir))
    registry.reload()
    try:
        assert registry.get_task("squares").items_file == str(spec_dir / "sq_items.jsonl")
        import tasks

        targets = [str(spec_dir / "sq_items.jsonl"), str(spec_dir / "sq.yaml"), str(Path(tasks.__file__).parent / "math.py")]
        code = "import os\ndef f(row):\n    return [p for p in row['paths'] if os.path.exists(p)]\n"
        assert sandbox.run(code, "f", [{"paths": targets}], tmp_path / "ws", FAST) == [[]]
    finally:
        monkeypatch.delenv("FTDOJO_TASKS")
        registry.reload()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops the code to nobody")
def test_a_workspace_nobody_can_enter(tmp_path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    locked.chmod(0o700)
    code = "def f(row):\n    return row['x'] + 1\n"
    if CAPS["files_hidden"]:  # the code works in its own tmpfs, wherever the workspace sits
        assert sandbox.run(code, "f", [{"x": 1}], locked / "ws", FAST) == [2]
    with pytest.raises(sandbox.UnusableWorkspace) as e:
        sandbox.run(code, "f", [{"x": 1}], locked / "ws", dataclasses.replace(FAST, namespaces=False))
    msg = str(e.value)
    assert "\n" not in msg and " is mode drwx------, so the sandbox user cannot reach it" in msg and "chmod o+x" in msg
    assert msg.split(": ")[1].split(" is mode")[0] in {str(p) for p in locked.parents} | {str(locked)}


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


DEDUPE_AND_AUGMENT = '''
def script(sources):
    seen, out = set(), []
    for row in sources["algebra_drills"]:          # one equation per solution value: across rows
        if row["solution"] in seen:
            continue
        seen.add(row["solution"])
        for ask in ("Solve for x: ", "Find x: "):  # augmentation: two phrasings of each
            out.append({"input": ask + row["equation"], "answer": row["solution"]})
    for row in sources["worked_solutions"][:5]:    # a second source, with its reasoning
        out.append({"input": row["problem"], "answer": row["final"], "rationale": row["solution"]})
    return out
'''


def test_a_data_script_over_whole_sources_changes_the_training_set_as_planned(math_domain, tmp_path) -> None:
    """A script deduplicating one source across rows, augmenting it, and joining a second source with
    rationales: the curated set is exactly what the script says, in the task's format, counted per script."""
    from actors.curator import Curator
    from ftdojo.dojo import DojoEnv, EnvHandle
    from ftdojo.messages import Budget, DataRecipe, DataScript, Example, Plan, TrainConfig

    env = EnvHandle(DojoEnv("math-linear", "tiny-random", Budget()))
    raw = repository.materialize(math_domain)
    drills = datafiles.read_rows(raw / "algebra_drills.csv", "csv")
    worked = datafiles.read_rows(raw / "worked_solutions.parquet", "parquet")[:5]
    first = {}
    for r in drills:
        first.setdefault(r["solution"], r)
    expected = {ask + r["equation"] for r in first.values() for ask in ("Solve for x: ", "Find x: ")} | {r["problem"] for r in worked}
    script = DataScript(name="drills_once", inputs=["algebra_drills", "worked_solutions"], code=DEDUPE_AND_AUGMENT)
    recipe = DataRecipe(sources=[], scripts=[script], decontaminate=False)
    data = asyncio.run(Curator(env, str(tmp_path)).curate(Plan(plan_id="s0", hypothesis="h", recipe=recipe, train=TrainConfig())))
    examples = datafiles.read_models(Path(data.path), Example)
    assert {e.input for e in examples} == expected and data.n_examples == len(expected) < len(drills) + 5
    assert data.per_source == {"drills_once": len(expected)} and data.sources["drills_once"].rows == len(expected)
    by_input = {e.input: e.completion for e in examples}
    r = next(iter(first.values()))
    assert by_input["Find x: " + r["equation"]] == f"Answer: {r['solution']}"
    assert by_input[worked[0]["problem"]] == f"{worked[0]['solution'].strip()}\nAnswer: {worked[0]['final']}"


@pytest.mark.parametrize("code, kinds", [
    ("import socket\ndef script(sources):\n    socket.create_connection(('1.1.1.1', 80), timeout=1)\n", {"network", "exception"}),
    ("def script(sources):\n    while True:\n        pass\n", {"timeout", "cpu_time"}),
    ("def script(sources):\n    return [{'input': 'x'}]\n", {"bad_output"}),
    ("def script(sources):\n    return open('/etc/shadow').read()\n", {"filesystem", "exception", "bad_output"}),
], ids=["network", "endless", "malformed", "reads-files"])
def test_a_hostile_data_script_is_contained_like_a_hostile_transform(math_domain, tmp_path, code, kinds) -> None:
    from actors.curator import Curator
    from ftdojo.dojo import DojoEnv, EnvHandle
    from ftdojo.messages import Budget, DataRecipe, DataScript, Plan, TrainConfig

    env = EnvHandle(DojoEnv("math-linear", "tiny-random", Budget()))
    recipe = DataRecipe(sources=[], scripts=[DataScript(name="evil", inputs=["algebra_drills"], code=code)])
    with pytest.raises(SandboxViolation) as e:
        asyncio.run(Curator(env, str(tmp_path), limits=sandbox.Limits(wall_s=5, cpu_s=3)).curate(
            Plan(plan_id="e0", hypothesis="h", recipe=recipe, train=TrainConfig())))
    assert e.value.kind in kinds, e.value
