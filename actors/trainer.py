"""Trainer: turns a plan and its curated data into a trained adapter.

Charges the plan's steps to the run's budget (through the DojoEnv) before any
compute, then trains through ``ftdojo.training.fit`` (Ray Train). A crash or
a non-finite loss comes back as ``TrainResult(status="failed")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftdojo import training
from ftdojo.messages import CuratedData, Plan, TaskCard, TrainResult
from ftdojo.runtime import call, warm


class Trainer:
    def __init__(self, env: Any, workspace: str, threads: int = 1) -> None:
        self.env = env
        self.workspace = Path(workspace)
        self.threads = threads
        warm("ray.train.torch")  # torch and Ray Train (not transformers: its lazy module is not thread-safe to import)

    async def train(self, plan: Plan, data: CuratedData, card: TaskCard, init_adapter: str | None = None) -> TrainResult:
        """``init_adapter``: the parent's adapter folder when the plan continues it (``train.init="parent"``)."""
        await call(self.env, "charge_train_steps", plan.train.steps)
        return training.fit(
            plan_id=plan.plan_id,
            base_model=card.base_model,
            data_path=data.path,
            output_dir=str(self.workspace / plan.plan_id / "adapter"),
            train=plan.train,
            prompt=plan.prompt,
            instruction=card.instruction,
            threads=self.threads,
            init_adapter=init_adapter,
        )
