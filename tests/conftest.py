"""Shared fixtures: an isolated FTDOJO_HOME, a tiny model, one Ray cluster per session."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

_HOME = Path(os.environ.get("FTDOJO_TEST_HOME", "/tmp/ftdojo-test-home"))
os.environ["FTDOJO_HOME"] = str(_HOME)
# Models are shared with the user's cache so the bundled model is converted once per machine.
os.environ.setdefault("FTDOJO_MODELS", str(Path.home() / ".cache" / "ftdojo" / "models"))
os.environ.setdefault("FTDOJO_LOG_JSON", "1")
for k, v in {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(k, v)


FAKE_GPUS = 3
"""GPUs the session's Ray cluster declares (none exist)."""


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from ftdojo.models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="session")
def math_domain():
    from ftdojo import repository
    from ftdojo.registry import get_domain

    d = get_domain("math")
    repository.materialize(d)
    return d


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    # GPUs it does not have: Ray places and assigns them (CUDA_VISIBLE_DEVICES) as on a GPU node, so placement
    # is testable here; runs that declare none never see them
    ray.init(num_cpus=2, num_gpus=FAKE_GPUS, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()
