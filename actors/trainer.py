"""Trainer: turns a plan and its curated data into a trained checkpoint.

Charges the plan's steps to the run's budget (through the DojoEnv) before any
compute, then trains through ``ftdojo.training.fit`` (Ray Train) on the
resources the profile gave it — threads, training workers, GPU, precision, compiled layers —
which no plan can change. A crash or a non-finite loss comes back as
``TrainResult(status="failed")``.
"""

from __future__ import annotations

from pathlib import Path

from ftdojo import training
from ftdojo.dojo import EnvHandle
from ftdojo.messages import TrainRequest, TrainResult
from ftdojo.runtime import Handle, warm
from ftdojo.training import Precision


class Trainer:
    def __init__(self, env: EnvHandle, workspace: str, threads: int = 1, workers: int = 0, use_gpu: bool = False,
                 precision: Precision = "auto", devices: list[str] | None = None, sharding: str = "ddp",
                 compile_layers: bool = False) -> None:
        self.env = env
        self.workspace = Path(workspace)
        self.threads, self.workers, self.use_gpu, self.precision = threads, workers, use_gpu, precision
        self.sharding, self.compile_layers = sharding, compile_layers
        self.devices = list(devices or [])
        """The run's GPU ids, by bundle: training worker k uses the k-th (Ray gives workers no GPU of their own)."""
        warm("ray.train.torch")  # torch and Ray Train (not transformers: its lazy module is not thread-safe to import)

    async def train(self, req: TrainRequest) -> TrainResult:
        plan = req.plan
        await self.env.charge_train_steps(plan.train.steps)
        return training.fit(
            plan_id=plan.plan_id,
            base_model=req.card.base_model,
            data_path=req.data.path,
            output_dir=str(self.workspace / plan.plan_id / "adapter"),
            train=plan.train,
            prompt=plan.prompt,
            instruction=req.card.instruction,
            threads=self.threads,
            workers=self.workers,
            use_gpu=self.use_gpu,
            precision=self.precision,
            init_from=req.init_from,
            devices=self.devices,
            sharding=self.sharding,
            compile_layers=self.compile_layers,
        )


class TrainerHandle(Handle):
    """The run's trainer, in-process or a Ray actor."""

    actor = Trainer
    on_device = True

    async def train(self, req: TrainRequest) -> TrainResult:
        return await self._call(Trainer.train, req)
