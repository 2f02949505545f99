"""A small bench on a multi-node Ray cluster simulated on this machine (``ray.cluster_utils.Cluster``:
one raylet per node), with a user task defined on the driver's side. Run by ``test_placement.py`` in its
own process (one Ray cluster per process); prints one JSON line: the records' nodes and the report.

    python tests/multinode.py OUT_DIR
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

SPEC = """id: my-upper
description: Upper-case a word.
instruction: "Reply as 'Answer: <WORD>'."
answer_format: "A line 'Answer: <WORD>'."
answer_template: "Answer: {answer}"
answer_pattern: "Answer:\\\\s*(\\\\S+)"
metric: exact
items: upper_eval.jsonl
dev_size: 8
test_size: 16
sources:
  - name: upper_pairs
    file: upper_train.jsonl
    readme: Words and their upper case.
    suggested_prompt: "Capitalise: {word}"
    suggested_answer: "{upper}"
"""


def main(out: Path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    tasks = out / "driver-tasks"  # the user's task lives on the driver's side only
    tasks.mkdir(parents=True)
    words = [f"w{chr(97 + i % 26)}{chr(97 + i // 26)}x" for i in range(60)]
    (tasks / "upper.yaml").write_text(SPEC)
    (tasks / "upper_eval.jsonl").write_text("".join(json.dumps({"input": f"Capitalise: {w}", "answer": w.upper()}) + "\n" for w in words[:24]))
    (tasks / "upper_train.jsonl").write_text("".join(json.dumps({"word": w, "upper": w.upper()}) + "\n" for w in words[24:]))
    os.environ["FTDOJO_TASKS"] = str(tasks)
    # the driver's (head) node holds no CPU for runs: every run, the user's task included, runs on another node
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
    driver = ray.get_runtime_context().get_node_id()
    from ftdojo import bench, registry
    from ftdojo.messages import RunRecord

    registry.reload()
    suite = out / "multinode.yaml"
    suite.write_text("name: multinode\ntasks: [math-linear, my-upper]\nagents: [zero-shot]\nseeds: [0, 1]\nprofile: tiny\n")
    rc = bench.main([str(suite), "--profile", "tiny", "--out", str(out / "bench"), "resources.cpus=1"])
    records = [RunRecord.model_validate_json(p.read_text()) for p in sorted((out / "bench" / "runs").glob("*.json"))]
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    print(json.dumps({"rc": rc, "nodes": sorted(nodes), "driver": driver, "runs": [
        {"task": r.key.task, "seed": r.key.seed, "status": r.status, "error": r.error, "node": r.placement.node_id if r.placement else None,
         "n": r.test.n if r.test else 0} for r in records], "report": (out / "bench" / "results.md").read_text()}))
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
