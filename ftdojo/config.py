"""YAML configs -> validated pydantic models -> flat arguments.

``configs/agents/*.yaml`` name agents, ``configs/profiles/*.yaml`` the model,
budget and resources a bench runs under, ``configs/suites/*.yaml`` which
tasks x agents x seeds a bench expands. Defaults live in the schemas.
Dotted overrides (``train.lr=1e-4``, ``budget.max_train_steps=50``) apply to
the profile. Every failure names the file and the field.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ftdojo.errors import ConfigError, UnknownName
from ftdojo.messages import Budget, EvalBackend, PromptSpec, TrainConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

class BackboneConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
    kind: Literal["heuristic", "llm"] = "heuristic"
    """heuristic: deterministic expert rules; llm: an OpenAI-compatible endpoint."""
    model: str = ""
    """Model name sent to the endpoint."""
    base_url: str = ""
    """Endpoint, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (read at run time, never stored)."""
    max_retries: int = Field(3, ge=0)
    """Re-asks after an answer that does not validate; the validation error is fed back."""
    temperature: float | None = Field(None, ge=0, le=2)
    """Sampling temperature; unset: the model family's (0 for chat models; none sent to reasoning models,
    which take only their default)."""
    max_tokens: int | None = Field(None, ge=1)
    """Completion cap per request, reasoning tokens included; unset: the family's (1024 for chat models,
    16384 for reasoning models)."""
    token_param: Literal["auto", "max_tokens", "max_completion_tokens"] = "auto"
    """Which request field carries the cap: auto picks by family (OpenAI's o-series and GPT-5 take only
    max_completion_tokens) and switches if the endpoint refuses the one it sent."""
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    """Reasoning models: how hard to think (sent as reasoning_effort)."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """More request fields, sent as they are (e.g. {"thinking": {"type": "enabled", "budget_tokens": 4096}}
    on Anthropic's OpenAI-compatible endpoint)."""
    structured_output: Literal["auto", "json_schema", "off"] = "auto"
    """Send the answer's JSON schema as response_format: auto sends it and stops if the endpoint refuses it;
    off relies on validate-and-retry alone. Either way every answer is validated."""
    cache: Literal["off", "record", "replay", "auto"] = "auto"
    """On-disk request cache: auto replays hits and records misses; replay fails on a miss."""
    max_lookups: int = Field(3, ge=0)
    """Look-ups of source rows the planner may ask for before each plan (their text counts as tokens)."""
    usd_per_1m_tokens: float = Field(0.0, ge=0)
    """Price used for the report's cost figures (prompt and completion tokens together)."""


class Schema(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class AgentConfig(Schema):
    name: str
    """Agent name used in bench tables."""
    policy: str
    """Which agent implementation runs: a policy registered in ``ftdojo.agents`` (``@policy``)."""
    description: str = ""
    """One line for reports."""
    train: TrainConfig = TrainConfig()
    """Training config the agent starts from."""
    prompt: PromptSpec = PromptSpec()
    """Prompt format."""
    backbone: BackboneConfig = BackboneConfig()
    """What the planner and diagnostician reason with (ft-agent)."""
    data_model: BackboneConfig | None = None
    """What a recipe's synthesis steps ask: an OpenAI-compatible endpoint (``kind: llm``; ``base_url: bundled``
    serves the bundled SmolLM2-135M-Instruct with ``transformers serve`` for the run); unset: the backbone, where it is
    an LLM."""
    failfast: bool = True
    """Validate each plan before training (ft-agent)."""
    feedback: Literal["multi", "scalar"] = "multi"
    """Multi-level findings, or the dev score only (ablation)."""
    search: Literal["tree", "linear"] = "tree"
    """Branch from the best node, or always continue from the last (ablation)."""

    @model_validator(mode="after")
    def _data_model_is_llm(self) -> AgentConfig:
        if self.data_model is not None and self.data_model.kind != "llm":
            raise ValueError("data_model must be an endpoint: set data_model.kind: llm (with model and base_url)")
        return self

    @property
    def endpoints(self) -> dict[str, BackboneConfig]:
        """The agent's language-model endpoints by config field (backbone, data_model)."""
        out = {"backbone": self.backbone} if self.backbone.kind == "llm" else {}
        return out | ({"data_model": self.data_model} if self.data_model is not None else {})

    @property
    def api_keys(self) -> tuple[str, ...]:
        """Environment variables holding the keys its endpoints need (forwarded to the run's actors)."""
        return tuple(sorted({c.api_key_env for c in self.endpoints.values() if c.base_url != "bundled"}))

    def missing_key(self) -> str | None:
        """Why a run of this agent could not reach a hosted endpoint: an https endpoint (a provider's) whose key is
        not set here and whose answers are not all in the cache (``cache: replay``); None when nothing is missing."""
        import os

        for field, c in self.endpoints.items():
            hosted = c.base_url.startswith("https://") or not c.base_url
            if hosted and c.cache != "replay" and not os.environ.get(c.api_key_env):
                return (f"agent {self.name}: {field}.api_key_env {c.api_key_env} is not set, and {c.base_url or 'OpenAI'} needs a key; "
                        f"export {c.api_key_env}, or leave the agent out (--agents)")
        return None

    @property
    def synthesizer(self) -> BackboneConfig | None:
        """The data model synthesis steps ask (None: the agent has none)."""
        return self.data_model or (self.backbone if self.backbone.kind == "llm" else None)


class Resources(Schema):
    """Where a run trains and evaluates: the profile's, never a plan's (a planner cannot move a run off its devices)."""

    cpus: float = Field(2, gt=0)
    """CPUs each run declares to Ray (also torch threads)."""
    gpus: float = Field(0, ge=0)
    """GPUs each run declares to Ray."""
    workers: int = Field(0, ge=0)
    """Ray Train workers per fit: 0 trains in the calling process; N>=1 starts N workers (DDP)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """bf16 autocast over fp32 master weights; auto: bf16 where the device has native bf16."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: cuda when the run declares GPUs, else cpu."""
    sharding: Literal["ddp", "fsdp"] = "ddp"
    """With several workers: ``ddp`` replicates the model on each; ``fsdp`` shards full fine-tuning's weights,
    gradients and optimizer state across them (what a 7B full fine-tune needs; LoRA, QLoRA and freeze stay on DDP)."""
    compile_layers: bool = False
    """LoRA fits on the CPU run each decoder layer under ``torch.compile`` (inductor fuses the elementwise half of a
    step: 1.3x a step on an AMX Xeon, bench/step_modes.py). The compiled code is kept for the process's later fits;
    the first fit of a process pays the compilation (~15 s with inductor's on-disk cache warm, ~40 s cold)."""
    allocator: Literal["jemalloc", "glibc"] = "jemalloc"
    """The C allocator of a run's Ray actors: ``jemalloc`` (the copy Ray ships, preloaded) keeps a host fit's
    freed activations from piling up in glibc's heap (peak 0.72x glibc's at the same speed, bench/allocator.py);
    ``glibc``: the system's. A supervisor run in the caller's process (not through Ray) keeps the caller's."""

    @model_validator(mode="after")
    def _one_gpu_per_worker(self) -> Resources:
        if self.use_gpu and self.gpus > 1 and (self.gpus != int(self.gpus) or self.workers != int(self.gpus)):
            raise ValueError(f"gpus={self.gpus:g} needs one training worker per GPU: set workers: {math.ceil(self.gpus)} "
                             f"and a whole number of GPUs")
        if self.sharding == "fsdp" and self.workers < 2:
            raise ValueError(f"sharding: fsdp shards across training workers; set workers: 2 or more (now {self.workers})")
        if self.use_gpu and 0 < self.gpus <= 1 and self.workers > 1:
            raise ValueError(f"workers={self.workers} would share one GPU (NCCL needs a device per worker); set gpus: {self.workers}")
        return self

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))

    @property
    def use_gpu(self) -> bool:
        return self.device == "cuda" or (self.device == "auto" and self.gpus > 0)


class ProfileConfig(Schema):
    name: str
    """Profile name (part of the run key)."""
    description: str = ""
    """One line for reports."""
    base_model: str = "smollm2-135m-instruct"
    """Model spec every task starts from."""
    budget: Budget = Budget()
    """Per-run budget."""
    resources: Resources = Resources()
    """CPUs, GPUs, training workers, precision and device of every run."""
    eval_batch_size: int = Field(32, ge=1)
    """Generation batch size (local backend)."""
    evaluation: EvalBackend = EvalBackend()
    """How candidates are evaluated: ``backend: local`` (default) or ``server`` (an inference server per run)."""
    eval_max_new_tokens: int | None = Field(None, ge=1)
    """Cap on every task's generation length (a smoke profile; None: each task's own)."""
    eval_samples: int | None = Field(None, ge=1)
    """Cap on every task's samples per item (a smoke profile; None: each task's own)."""

    @property
    def eval_cap(self) -> tuple[int | None, int | None]:
        return self.eval_max_new_tokens, self.eval_samples
    train: dict[str, Any] = Field(default_factory=dict)
    """Overrides applied on top of every agent's train config."""


class SuiteConfig(Schema):
    name: str
    """Suite name."""
    description: str = ""
    """One line for reports."""
    tasks: list[str] = Field(min_length=1)
    """Task ids."""
    agents: list[str] = Field(min_length=1)
    """Agent names."""
    seeds: list[int] = Field([0], min_length=1)
    """Seeds; each task x agent runs once per seed."""
    profile: str = "default"
    """Profile the suite runs under unless --profile says otherwise."""
    agent_tasks: dict[str, list[str]] = {}
    """Agents that run on only some of the suite's tasks: agent name -> its tasks (the others run on all),
    e.g. ``{ft-agent: [math-linear, chem-group]}`` for a costly agent on one task per domain."""

    @model_validator(mode="after")
    def _agent_tasks_within_suite(self) -> SuiteConfig:
        for agent, tasks in self.agent_tasks.items():
            if agent not in self.agents:
                raise ValueError(f"agent_tasks.{agent}: {agent!r} is not one of the suite's agents ({', '.join(self.agents)}); "
                                 f"add it to agents or drop the entry")
            if not tasks:
                raise ValueError(f"agent_tasks.{agent}: no tasks; list at least one or drop {agent} from agents")
            if stray := [t for t in tasks if t not in self.tasks]:
                raise ValueError(f"agent_tasks.{agent}: {', '.join(stray)} not among the suite's tasks; add to tasks or remove")
        return self

    def runs_on(self, agent: str, task: str) -> bool:
        """Whether the suite's grid has ``agent`` on ``task``."""
        return task in self.agent_tasks.get(agent, self.tasks)


def _names(kind: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / kind).glob("*.yaml"))


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError(str(path), "", f"invalid YAML at {where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", "expected a mapping of fields at the top level")
    return data


def validate(model: type[Schema], data: dict[str, Any], path: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "(top level)"
        problem = err["msg"]
        if err["type"] == "extra_forbidden":
            problem = f"unknown field; valid fields: {', '.join(_fields_at(model, err['loc'][:-1]))}"
        elif "input" in err and not isinstance(err["input"], dict):
            problem = f"{problem} (got {err['input']!r})"
        raise ConfigError(path, field, problem) from None


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    for part in loc:
        ann = model.model_fields[str(part)].annotation if str(part) in model.model_fields else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            break
    return sorted(model.model_fields)


def _path(kind: str, name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix not in {".yaml", ".yml"}:
        path = CONFIG_DIR / kind / f"{name_or_path}.yaml"
        if not path.exists():
            raise UnknownName(kind.rstrip("s"), name_or_path, _names(kind))
    return path


def _load(kind: str, name_or_path: str, model: type[Schema]) -> Any:
    path = _path(kind, name_or_path)
    return validate(model, read_yaml(path), str(path))


def load_agent(name: str, policies: list[str] | None = None) -> AgentConfig:
    """An agent YAML by name or path; with ``policies`` (``ftdojo.agents.load`` passes the registered ones)
    its ``policy`` must be one of them."""
    path = _path("agents", name)
    data = read_yaml(path)
    if policies is not None and data.get("policy") not in policies:
        valid = ", ".join(repr(x) for x in sorted(policies))
        got = f"unknown policy {data['policy']!r}" if "policy" in data else "missing"
        raise ConfigError(str(path), "policy", f"{got}; valid: {valid}")
    return validate(AgentConfig, data, str(path))


def load_suite(name: str) -> SuiteConfig:
    return _load("suites", name, SuiteConfig)


def load_profile(name: str, overrides: list[str] | None = None) -> ProfileConfig:
    prof: ProfileConfig = _load("profiles", name, ProfileConfig)
    where = f"profile {name}"
    if overrides:
        data = prof.model_dump()
        for item in overrides:
            apply_override(data, item)
        where = f"profile {name} + overrides {' '.join(overrides)}"
        prof = validate(ProfileConfig, data, where)
    try:
        TrainConfig.model_validate(prof.train)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(where, ".".join(["train", *map(str, err["loc"])]), err["msg"]) from None
    return prof


def agent_train(agent: AgentConfig, profile: ProfileConfig) -> TrainConfig:
    """The agent's train config with the profile's overrides on top."""
    return TrainConfig.model_validate({**agent.train.model_dump(), **profile.train})


def apply_override(data: dict[str, Any], item: str) -> None:
    """``a.b.c=value`` sets data['a']['b']['c'] = yaml(value)."""
    if "=" not in item:
        raise ConfigError("command line", item, "an override is FIELD.PATH=VALUE, e.g. train.lr=1e-4")
    key, raw = item.split("=", 1)
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            if p in node or p not in ("train",):
                raise ConfigError("command line", key, f"{p!r} is not a section; sections: budget, resources, train")
            node[p] = {}
        node = node[p]
    node[parts[-1]] = yaml.safe_load(raw)


def list_configs(kind: Literal["agents", "profiles", "suites"]) -> list[str]:
    return _names(kind)
