"""The typed protocol: every model that crosses an actor or process boundary.

All messages are frozen pydantic v2 models with ``extra="forbid"`` and a
``kind`` literal, so they can be dispatched with ``match``/``isinstance`` and
round-trip through JSON unchanged (the run record is one of them).
Field docs are attribute docstrings (``use_attribute_docstrings``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 3

LEGACY_TRAIN_FIELDS = ("num_workers", "use_gpu", "precision")
"""TrainConfig fields of schema version 2 that moved to the profile's resources."""

Direction = Literal["max", "min"]
Value = str | int | float | bool | None | list[Any] | dict[str, Any]
"""A raw source's cell: a file's scalar, or a dataset's nested list or mapping."""
CheckStatus = Literal["pass", "warn", "fail"]
Decision = Literal["continue", "branch", "stop"]


class Message(BaseModel):
    """Base of all protocol messages."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


# --- the task, as an agent sees it -------------------------------------------------


class SourceInfo(Message):
    """One raw source in the shared data repository, as the catalog shows it."""

    kind: Literal["source_info"] = "source_info"
    name: str
    """Source name, unique within the domain."""
    format: Literal["jsonl", "csv", "parquet"]
    """File format on disk."""
    fields: dict[str, str]
    """Column name -> description."""
    rows: int
    """Number of rows."""
    readme: str
    """The source's dataset card."""
    samples: list[dict[str, Value]]
    """A few rows, verbatim."""
    suggested_prompt: str | None = None
    """Template over the fields that yields a task input, when the card gives one."""
    suggested_answer: str | None = None
    """Template giving the final answer, when the card gives one."""
    suggested_rationale: str | None = None
    """Template giving worked reasoning before the answer, when the card gives one."""


class EvalBackend(Message):
    """How candidates are evaluated (a profile's ``evaluation`` section): ``local``, ftdojo's own batched decoding
    in the evaluating process; ``server``, an OpenAI-compatible inference server started for the run
    (``ftdojo.serving``: vLLM on GPUs, ``transformers serve`` on CPUs, or any ``command``)."""

    kind: Literal["eval_backend"] = "eval_backend"
    backend: Literal["local", "server"] = "local"
    """local: in-process decoding; server: an inference server inside the run's reservation."""
    server: Literal["transformers", "vllm", "command"] = "transformers"
    """Which server: ``transformers serve`` (CPU or GPU, the candidate merged into a temporary checkpoint), vLLM
    (GPU: the base served once per process, LoRA adapters loaded per candidate, tensor parallel over the run's
    GPUs), or ``command``."""
    command: list[str] = Field(default_factory=list)
    """server ``command``: the argv, with ``{model}``, ``{host}`` and ``{port}`` filled in; it must answer
    ``GET /health`` and ``POST /v1/completions``."""
    concurrency: int = Field(8, ge=1)
    """Requests in flight at once (the server batches them)."""
    startup_timeout_s: float = Field(600.0, gt=0)
    """Seconds the server may take to answer ``/health`` (loading a 7B model included)."""
    request_timeout_s: float = Field(900.0, gt=0)
    """Seconds one completion request may take."""
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1)
    """vLLM: the share of the GPU its weights and KV cache may take (the trainer shares the GPU)."""
    max_lora_rank: int = Field(64, ge=1)
    """vLLM: the largest LoRA rank it accepts."""
    extra_args: list[str] = Field(default_factory=list)
    """More arguments for the server's command line."""

    @model_validator(mode="after")
    def _command_given(self) -> EvalBackend:
        if self.backend == "server" and self.server == "command" and not self.command:
            raise ValueError("server 'command' needs command: [argv with {model}, {host} and {port}]")
        return self


class Budget(Message):
    """What one run may spend."""

    kind: Literal["budget"] = "budget"
    max_iterations: int = Field(1, ge=0)
    """Training iterations the agent may start."""
    max_train_steps: int = Field(400, ge=0)
    """Optimizer steps summed over all iterations."""
    max_dev_evals: int = Field(4, ge=0)
    """Calls to DojoEnv.evaluate on dev."""
    max_wall_s: float = Field(3600.0, gt=0)
    """Wall time for the whole run, seconds."""
    max_llm_tokens: int = Field(0, ge=0)
    """LLM tokens for backbones (0: no limit)."""
    max_data_tokens: int = Field(100_000, ge=0)
    """Data-model tokens for a run's synthesis steps (0: synthesis off)."""
    probe_items: int = Field(30, ge=1)
    """Dev items a probe (``Plan.probe``) is scored on, the first ones of dev; each probe is one dev evaluation."""


class TaskCard(Message):
    """Everything an agent is told about a task."""

    kind: Literal["task_card"] = "task_card"
    task_id: str
    """Registry id, e.g. ``math-arith``."""
    domain: str
    """Domain whose raw-data repository the task shares."""
    description: str
    """What the fine-tuned model must do."""
    instruction: str
    """Instruction appended to each input in the model's prompt."""
    answer_format: str
    """Required output format, in words."""
    answer_template: str
    """Template that renders a gold answer in the required format (``{answer}``)."""
    answer_pattern: str
    """Regex whose first group the scorer extracts from an output (last match wins)."""
    metric: str
    """Metric name (see ftdojo.scoring)."""
    direction: Direction
    """Whether a higher or lower metric is better."""
    categories: list[str]
    """Categories that dev/test items belong to."""
    base_model: str
    """Model the agent must start from."""
    budget: Budget
    """What the run may spend."""
    sources: list[SourceInfo]
    """The raw-data catalog of the task's domain."""
    dev_size: int
    """Items in the visible dev split."""
    verifier: bool = False
    """Whether the task offers a check of answers that recipes can filter with (``DataRecipe.verify``); no
    built-in task does: what computes gold answers is the suite's, never the agent's."""


class DevItem(Message):
    """One visible dev item: input, gold answer, category."""

    kind: Literal["dev_item"] = "dev_item"
    id: str
    """Stable item id."""
    input: str
    """The task input (without the instruction)."""
    answer: str
    """Gold answer value (not templated)."""
    category: str
    """Category for per-category scores."""


# --- a plan ---------------------------------------------------------------------------


class SourceMapping(Message):
    """How one raw source becomes training examples."""

    kind: Literal["source_mapping"] = "source_mapping"
    source: str
    """Source name from the catalog."""
    prompt: str
    """Template over the source's fields giving the task input, e.g. ``{question}``."""
    answer: str
    """Template over the fields giving the answer value, e.g. ``{answer}``."""
    rationale: str | None = None
    """Template for reasoning written before the answer line (None: answer only)."""
    weight: float = Field(1.0, gt=0)
    """Relative sampling weight when mixing."""
    max_rows: int | None = Field(None, ge=1)
    """Cap on rows taken from this source."""
    where: dict[str, str] = Field(default_factory=dict)
    """Keep only rows whose field equals the value."""
    transform: str | None = None
    """Python source defining ``transform(row) -> dict | None``, run in the sandbox
    (standard library only, no network, no files but its own) on every selected
    row before the templates: return the row's new fields, or None to drop it."""


class DataScript(Message):
    """Agent-written Python over whole sources, for what one row at a time cannot do (joins, deduplication
    across rows, augmentation): ``script(sources)`` gets ``{name: [row, ...]}`` for its ``inputs`` and returns
    examples ``{"input": ..., "answer": ..., "rationale": ... (optional)}``; it runs in the sandbox
    (standard library only, no network, no files but its own), and its examples go through the recipe's
    filters like any source's."""

    kind: Literal["data_script"] = "data_script"
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    """Names its examples' source in the statistics (not a catalog name)."""
    inputs: list[str] = Field(min_length=1)
    """Catalog names of the sources whose rows it reads."""
    code: str
    """Python source defining ``script(sources) -> list[dict]``."""
    weight: float = Field(1.0, gt=0)
    """Relative sampling weight when mixing."""


class Synthesis(Message):
    """Rows of a source sent to the data model (the agent's ``data_model``, an OpenAI-compatible endpoint),
    one request a row, for what the raw data lacks: ``rationale`` writes the reasoning to a row's gold answer,
    ``answer`` solves the row's input (the answer is what the task's extractor reads from the reply),
    ``paraphrase`` rewrites the row's input (the gold answer stays). Replies are cached like the backbone's,
    their tokens charged to ``budget.max_data_tokens``, and the examples go through the recipe's filters (and
    the run's leak check against dev and test) like any source's."""

    kind: Literal["synthesis"] = "synthesis"
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    """Names its examples' source in the statistics (not a catalog name)."""
    source: str
    """Catalog name of the source whose rows it sends."""
    produce: Literal["rationale", "answer", "paraphrase"]
    """What the data model writes for each row."""
    prompt: str = "{input}"
    """Template over the source's fields giving the task input."""
    answer: str = "{answer}"
    """Template giving the gold answer (rationale and paraphrase; an ``answer`` step takes the model's)."""
    where: dict[str, str] = Field(default_factory=dict)
    """Keep only rows whose field equals the value."""
    instruction: str = ""
    """More guidance for the data model, added to its prompt (style, length, what to stress)."""
    max_rows: int = Field(16, ge=1, le=512)
    """Rows sent (the first of the selection); each costs one request (capped by ``data_model.max_tokens``)."""
    weight: float = Field(1.0, gt=0)
    """Relative sampling weight when mixing."""


class DataRecipe(Message):
    """What the curator builds: sources, mapping, filters, mixing."""

    kind: Literal["data_recipe"] = "data_recipe"
    sources: list[SourceMapping]
    """Sources and how each maps into the task format."""
    scripts: list[DataScript] = Field(default_factory=list)
    """Data scripts, each making examples from whole sources."""
    synthesis: list[Synthesis] = Field(default_factory=list)
    """Synthesis steps, each asking the data model to write for a source's rows."""
    dedupe: bool = True
    """Drop exact duplicate prompts."""
    decontaminate: bool = True
    """Drop examples whose input overlaps a dev item."""
    max_examples: int | None = Field(None, ge=1)
    """Total cap after mixing."""
    min_answer_chars: int = Field(1, ge=0)
    """Drop examples whose rendered answer is shorter."""
    require_parseable: bool = False
    """Drop examples the task's own extractor cannot parse."""
    verify: bool = False
    """Drop examples the task's verifier rejects (needs ``TaskCard.verifier``; no built-in task offers one)."""


class TrainConfig(Message):
    """How the trainer fine-tunes."""

    kind: Literal["train_config"] = "train_config"
    method: Literal["lora", "qlora", "full", "freeze"] = "lora"
    """Fine-tuning method (``ftdojo.methods``): LoRA adapters, QLoRA (LoRA over a 4-bit base, CUDA only),
    full fine-tuning, or freeze (train the last layers or named modules only). Where it trains (devices,
    workers, precision, sharding) is the profile's."""
    steps: int = Field(200, ge=1)
    """Optimizer steps."""
    batch_size: int = Field(16, ge=1)
    """Global batch size (split across workers)."""
    micro_batch_size: int | None = Field(None, ge=1)
    """Rows per forward and backward pass on each worker, accumulating gradients up to the worker's share of
    ``batch_size`` (the same optimizer steps; less activation memory); None: the whole share at once."""
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate."""
    warmup_steps: int = Field(10, ge=0)
    """Linear warm-up steps, then cosine decay."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay."""
    max_length: int = Field(256, ge=8)
    """Token cap on prompt+completion; longer examples are truncated."""
    lora_r: int = Field(16, ge=1)
    """LoRA rank."""
    lora_alpha: int = Field(32, ge=1)
    """LoRA alpha."""
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    """LoRA dropout."""
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Module names that get adapters."""
    trainable_layers: int = Field(2, ge=1)
    """freeze: train only the last N decoder layers (when ``trainable_modules`` is empty)."""
    trainable_modules: list[str] = Field(default_factory=list)
    """freeze: train only modules with these names (the last part of the dotted name, e.g. ``o_proj``)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass instead of keeping them: activation
    memory of one layer instead of all, for about a third more compute."""
    seed: int = 0
    """Seed for init and data order."""
    init: Literal["base", "parent"] = "base"
    """Start from the base model, or continue training the parent experiment's checkpoint with the
    same method (a LoRA adapter's rank, alpha and target modules carry over)."""

    @model_validator(mode="after")
    def _lora_needs_targets(self) -> TrainConfig:
        if self.method in ("lora", "qlora") and not self.target_modules:
            raise ValueError(f"method {self.method!r} needs target_modules, e.g. ['q_proj', 'v_proj']")
        return self


class PromptSpec(Message):
    """How a task input becomes the model's chat prompt."""

    kind: Literal["prompt_spec"] = "prompt_spec"
    system: str | None = None
    """System message; None keeps the model's own default."""
    template: str = "{input}\n\n{instruction}"
    """User message template over ``input`` and ``instruction``."""

    @model_validator(mode="after")
    def _template_fields(self) -> PromptSpec:
        import string

        try:
            names = {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}
        except ValueError as e:
            raise ValueError(f"template is not a format string ({e}); use {{input}} and {{instruction}}") from None
        if "input" not in names or names - {"input", "instruction"}:
            raise ValueError(f"template must name {{input}} and may name {{instruction}}, nothing else (names {sorted(names)})")
        return self


class Plan(Message):
    """One iteration's plan."""

    kind: Literal["plan"] = "plan"
    plan_id: str
    """Unique within the run."""
    hypothesis: str
    """Why this plan should beat its parent."""
    parent: str | None = None
    """Experiment this one branches from (None: the base model)."""
    recipe: DataRecipe
    """Training data."""
    train: TrainConfig
    """Training configuration."""
    prompt: PromptSpec = PromptSpec()
    """Prompt format used for training and evaluation."""
    probe: bool = False
    """A short fit to compare data choices cheaply: scored on the first ``Budget.probe_items`` dev items, not
    counted against ``max_iterations``; a later plan may continue its adapter."""


class LoopJob(Message):
    """What each training worker runs (Ray Train, or ``torchrun -m ftdojo.training JOB.json``)."""

    kind: Literal["loop_job"] = "loop_job"
    train: TrainConfig
    """The plan's training config."""
    prompt: PromptSpec
    """Prompt format."""
    base_model: str
    """Base model spec."""
    data_path: str
    """JSONL of Example rows."""
    output_dir: str
    """Where rank 0 writes the checkpoint and metrics.json."""
    instruction: str
    """The task's instruction."""
    threads: int = 1
    """torch threads per worker."""
    use_gpu: bool = False
    """Train on the worker's GPU (the profile's resources)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """The profile's precision."""
    save: bool = True
    """Write the checkpoint (the smoke train does not)."""
    smoke: bool = False
    """Smoke test: one fixed batch at a constant learning rate, so the loss must fall."""
    init_from: str | None = None
    """Checkpoint of the parent experiment to continue (same method)."""
    sharding: Literal["ddp", "fsdp"] = "ddp"
    """Several workers: replicate the model (DDP), or shard full fine-tuning's weights, gradients and optimizer
    state across them (FSDP; LoRA, QLoRA and freeze train little and stay on DDP)."""
    compile_layers: bool = False
    """The profile's ``compile_layers``: decoder layers under ``torch.compile`` where the fit allows it."""
    devices: list[str] = Field(default_factory=list)
    """The run's GPU ids: worker k sets ``CUDA_VISIBLE_DEVICES`` to the k-th before touching CUDA (Ray Train
    workers placed inside the run's reservation get no GPU from Ray); empty: as Ray or torchrun set it."""


# --- reports --------------------------------------------------------------------------


class Example(Message):
    """One chat-formatted training example before tokenization."""

    kind: Literal["example"] = "example"
    input: str
    """Task input."""
    completion: str
    """Target text in the task's answer format (EOS added at tokenization)."""
    source: str
    """Source it came from."""

    @property
    def text(self) -> str:
        """Everything the model trains on (input, rationale, answer): what leak and overlap checks read."""
        return f"{self.input}\n{self.completion}"


class SourceStats(Message):
    """What curation did to one source of a recipe: rows in, rows dropped by each filter, examples out."""

    kind: Literal["source_stats"] = "source_stats"
    rows: int
    """Rows of the source its mapping selected (``where``)."""
    dropped: dict[str, int] = Field(default_factory=dict)
    """Rows dropped, per filter (transform, short_answer, unparseable, verifier, duplicate, dev_overlap)."""
    kept: int
    """Examples left after the filters (before mixing by weight)."""
    input_chars: float = 0.0
    """Mean characters of a kept example's input."""
    completion_chars: float = 0.0
    """Mean characters of a kept example's completion (rationale and answer)."""
    max_completion_chars: int = 0
    """The longest kept completion."""


class CuratedData(Message):
    """What the curator built from a recipe."""

    kind: Literal["curated_data"] = "curated_data"
    plan_id: str
    """Plan it belongs to."""
    path: str
    """JSONL file of Example rows in the run's workspace."""
    sha256: str
    """Content hash of that file."""
    n_examples: int
    """Rows after filtering and mixing."""
    per_source: dict[str, int]
    """Rows kept per source."""
    dropped: dict[str, int]
    """Rows dropped per reason."""
    samples: list[Example]
    """A few examples, for humans and the validator."""
    sources: dict[str, SourceStats] = Field(default_factory=dict)
    """Per source: rows in, drops per filter, examples out, lengths."""


class Check(Message):
    """One named validation check."""

    kind: Literal["check"] = "check"
    name: str
    """Check name."""
    status: CheckStatus
    """pass, warn or fail."""
    reason: str
    """Why, with the measured value."""
    value: float | None = None
    """The measured value, when numeric."""
    seconds: float | None = None
    """Time the check took, for the costly ones (the smoke train)."""


class ValidationReport(Message):
    """Fail-fast validation of a plan before full training."""

    kind: Literal["validation_report"] = "validation_report"
    plan_id: str
    """Plan validated."""
    checks: list[Check]
    """Every check run."""
    smoke_losses: list[float] = Field(default_factory=list)
    """Losses of the smoke train."""
    memory_estimate_mb: float | None = None
    """Estimated peak training memory."""
    longest_tokens: int | None = None
    """The longest tokenised example of the checked sample (prompt and completion, cut at max_length)."""
    label_tokens: int | None = None
    """The most label tokens of one example of the sample."""
    wall_s: float = 0.0
    """Time the validation took."""

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks)


class TrainResult(Message):
    """What a training run produced."""

    kind: Literal["train_result"] = "train_result"
    plan_id: str
    """Plan trained."""
    status: Literal["ok", "failed"]
    """ok, or failed with ``error``."""
    error: str | None = None
    """Failure reason."""
    losses: list[float] = Field(default_factory=list)
    """Training loss per optimizer step."""
    steps: int = 0
    """Optimizer steps done."""
    tokens: int = 0
    """Tokens processed (prompt + completion, no padding)."""
    tokens_per_s: float = 0.0
    """Throughput over the training loop."""
    wall_s: float = 0.0
    """Time from start of fit to the saved checkpoint."""
    checkpoint: str | None = None
    """Adapter (or full-model) directory."""
    source_losses: dict[str, float] = Field(default_factory=dict)
    """Mean per-example loss by source over the second half of training (high: hard or noisy)."""
    checkpoint_sha256: str | None = None
    """Digest of the checkpoint's files when the trainer wrote them (provenance)."""
    device: str = "cpu"
    """Device type it trained on (the profile's resources, never the plan's)."""
    bf16: bool = False
    """Whether it trained under bf16 autocast."""
    compiled_layers: bool = False
    """Whether its decoder layers ran under ``torch.compile`` (the profile's ``compile_layers``)."""
    workers: int = 0
    """Ray Train workers (0: in the calling process)."""
    visible_devices: list[str | None] = Field(default_factory=list)
    """``CUDA_VISIBLE_DEVICES`` each training process saw, by rank (None: unset)."""
    sharding: Literal["none", "ddp", "fsdp"] = "none"
    """How the workers shared the model: one process, DDP replicas, or FSDP shards."""
    peak_device_mb: float | None = None
    """Peak GPU memory torch allocated during the fit (rank 0), MiB; None on CPU."""


class ErrorSample(Message):
    """A wrong answer, for diagnosis."""

    kind: Literal["error_sample"] = "error_sample"
    input: str
    """Task input."""
    expected: str
    """Gold answer value."""
    output: str
    """Raw model output."""
    extracted: str | None
    """What the extractor parsed (None: unparseable)."""
    category: str
    """Item category."""


class EvalReport(Message):
    """Scores of a candidate on one split."""

    kind: Literal["eval_report"] = "eval_report"
    split: Literal["dev", "test"]
    """Which split."""
    score: float
    """Metric over all items, unparseable counted wrong."""
    n: int
    """Items scored."""
    per_category: dict[str, float]
    """Metric per category."""
    parse_failure_rate: float
    """Share of outputs the extractor could not parse."""
    errors: list[ErrorSample]
    """Up to a few wrong answers."""
    wall_s: float = 0.0
    """Generation and scoring time."""
    item_scores: list[float] = Field(default_factory=list)
    """Score of each item in split order, for paired tests between agents (with several samples:
    the item's avg@n, or its pass@k where the task asks for pass@k)."""
    sample_scores: list[list[float]] = Field(default_factory=list)
    """With several samples per item: each sample's score, per item (empty for one sample)."""
    cached: bool = False
    """Reused from an identical earlier evaluation (the base model on the same items, decoding settings
    and code); greedy decoding makes it the same report, so only its wall time differs."""


class Candidate(Message):
    """A model to evaluate: the task's base model plus an optional adapter."""

    kind: Literal["candidate"] = "candidate"
    base_model: str
    """Base model id or path."""
    checkpoint: str | None = None
    """Adapter or full-model directory (None: the base model itself)."""
    prompt: PromptSpec = PromptSpec()
    """Prompt format to evaluate with."""


class Finding(Message):
    """One diagnosis at one level."""

    kind: Literal["finding"] = "finding"
    level: Literal["data", "training", "eval"]
    """Where the problem or signal is."""
    code: str
    """Short machine-readable code, e.g. ``underfit``."""
    message: str
    """What was seen, with numbers."""


class Feedback(Message):
    """The diagnostician's verdict on one experiment."""

    kind: Literal["feedback"] = "feedback"
    plan_id: str
    """Plan judged."""
    findings: list[Finding]
    """Findings at data, training and eval level."""
    decision: Decision
    """What the planner should do next."""


class Experiment(Message):
    """One node of a run's experiment tree."""

    kind: Literal["experiment"] = "experiment"
    id: str
    """Same as the plan id."""
    parent: str | None
    """Parent experiment."""
    plan: Plan | None
    """The plan (None when the planner itself failed to produce one)."""
    curated: CuratedData | None = None
    """Data built for it."""
    validation: ValidationReport | None = None
    """Fail-fast report."""
    train: TrainResult | None = None
    """Training outcome."""
    dev: EvalReport | None = None
    """Dev evaluation."""
    feedback: Feedback | None = None
    """Diagnosis."""
    status: Literal["ok", "rejected", "failed"]
    """ok: trained and evaluated; rejected: failed validation; failed: crashed."""
    error: str | None = None
    """Why it was rejected or failed."""
    wall_s: float = 0.0
    """Time the iteration took."""



class PlanProposal(Message):
    """What a planner backbone returns: the parts of a plan it decides (the planner adds the id)."""

    kind: Literal["plan_proposal"] = "plan_proposal"
    hypothesis: str
    """Why this plan should beat its parent."""
    recipe: DataRecipe
    """Training data."""
    train: TrainConfig
    """Training configuration."""
    parent: str | None = None
    """The experiment to build on: an id of a trained experiment in the history, "base" for a fresh start from
    the base model, or None for the planner's choice (the last experiment when its feedback said continue,
    else the best by dev)."""
    probe: bool = False
    """A short fit scored on a slice of dev, to compare candidate data cheaply before spending the budget."""


class Remaining(Message):
    """What is left of a run's budget when the planner is asked."""

    kind: Literal["remaining"] = "remaining"
    train_steps: int
    """Optimizer steps."""
    dev_evals: int
    """Dev evaluations."""
    wall_s: float
    """Seconds of wall time."""
    llm_tokens: int | None = None
    """LLM tokens (None: no cap)."""
    data_tokens: int = 0
    """Data-model tokens for synthesis steps."""
    iterations: int = 0
    """Training iterations the agent may still start."""


class RowLookup(Message):
    """A planner's request for more rows of a raw source (answered before it plans; bounded per iteration)."""

    kind: Literal["row_lookup"] = "row_lookup"
    source: str
    """Source name from the catalog."""
    where: dict[str, str] = Field(default_factory=dict)
    """Only rows whose fields equal these values."""
    offset: int = Field(0, ge=0)
    """Skip this many matching rows."""
    n: int = Field(5, ge=1, le=20)
    """Rows to return (at most 20)."""


class LookupRequest(Message):
    """The planner's answer when it wants to see rows before planning."""

    kind: Literal["lookup_request"] = "lookup_request"
    lookup: RowLookup
    """Which rows."""
    why: str = ""
    """What the planner wants to learn from them."""


class ProposeRequest(Message):
    """What the planner is asked: propose the next plan."""

    kind: Literal["propose_request"] = "propose_request"
    card: TaskCard
    """The task."""
    history: list[Experiment]
    """The run's experiment tree so far, in creation order."""
    base: TrainConfig
    """The agent's default training config."""
    steps_left: int
    """Optimizer steps left in the budget."""
    prompt: PromptSpec = PromptSpec()
    """Prompt format for a plan without a parent."""
    left: Remaining | None = None
    """The budget left (None: not given)."""


class Verdict(Message):
    """What a diagnostician backbone returns: findings beyond the rules', and a decision."""

    kind: Literal["verdict"] = "verdict"
    findings: list[Finding] = Field(default_factory=list)
    """Findings the rules did not make."""
    decision: Decision
    """What the planner should do next."""


class DiagnoseRequest(Message):
    """What the diagnostician is asked: judge one experiment against the run's best and its parent."""

    kind: Literal["diagnose_request"] = "diagnose_request"
    experiment: Experiment
    """The experiment to judge."""
    best: Experiment | None
    """The run's best node before this experiment."""
    parent: Experiment | None
    """The experiment it branched from."""
    card: TaskCard
    """The task."""


class ValidateRequest(Message):
    """What the validator is asked: check a plan and its curated data before training."""

    kind: Literal["validate_request"] = "validate_request"
    plan: Plan
    """The plan."""
    data: CuratedData
    """Its curated training set."""
    card: TaskCard
    """The task."""


class TrainRequest(Message):
    """What the trainer is asked: train a plan on its curated data."""

    kind: Literal["train_request"] = "train_request"
    plan: Plan
    """The plan."""
    data: CuratedData
    """Its curated training set."""
    card: TaskCard
    """The task."""
    init_from: str | None = None
    """The parent's checkpoint folder when the plan continues it (``train.init="parent"``)."""


class SourceRows(Message):
    """Rows of one raw source, column by column order (values as the file holds them)."""

    kind: Literal["source_rows"] = "source_rows"
    source: str
    """Catalog name."""
    columns: list[str]
    """Column names, in file order."""
    rows: list[list[Value]]
    """One list of values per row, in ``columns`` order (a dataset's nested values as they are)."""

    def dicts(self) -> list[dict[str, Value]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]

    @classmethod
    def of(cls, source: str, rows: list[dict[str, Value]]) -> SourceRows:
        columns = list(rows[0]) if rows else []
        return cls(source=source, columns=columns, rows=[[r.get(c) for c in columns] for r in rows])


class LLMUsage(Message):
    """What a backbone has spent."""

    kind: Literal["llm_usage"] = "llm_usage"
    tokens: int = 0
    """Prompt plus completion tokens of requests sent."""
    requests: int = 0
    """Requests sent (cache hits excluded)."""
    retries: int = 0
    """Re-asks after an answer that did not validate."""
    cache_hits: int = 0
    """Answers replayed from the on-disk cache."""
    lookups: int = 0
    """Source rows the planner asked to see before planning (their text is charged as prompt tokens)."""

    def __add__(self, other: LLMUsage) -> LLMUsage:
        return LLMUsage(tokens=self.tokens + other.tokens, requests=self.requests + other.requests,
                        retries=self.retries + other.retries, cache_hits=self.cache_hits + other.cache_hits,
                        lookups=self.lookups + other.lookups)


class Exchange(Message):
    """One request to a language model and what came back: a line of a run's transcript."""

    kind: Literal["exchange"] = "exchange"
    role: str
    """Who asked: planner, diagnostician (or a data step)."""
    model: str
    """The model the request named."""
    t: float
    """Seconds since the epoch when the answer came (orders a run's exchanges across its actors)."""
    request: dict[str, Any]
    """The body as sent (messages and settings; the answer schema by name only); no API key."""
    reply: str = ""
    """The answer's text ('' when it failed)."""
    tokens: int = 0
    """Tokens charged (0 for a cache hit)."""
    cached: bool = False
    """Answered from the on-disk cache, not the endpoint."""
    error: str | None = None
    """What went wrong instead of an answer (a refusal, a network error)."""


class Usage(Message):
    """Budget spent by a run so far."""

    kind: Literal["usage"] = "usage"
    dev_evals: int = 0
    """Dev evaluations."""
    train_steps: int = 0
    """Optimizer steps charged."""
    wall_s: float = 0.0
    """Seconds since the run's environment started."""
    llm_tokens: int = 0
    """Backbone tokens (planner and diagnostician together)."""
    llm_requests: int = 0
    """Backbone requests sent."""
    llm_retries: int = 0
    """Backbone re-asks."""
    llm_cache_hits: int = 0
    """Backbone answers from the cache."""
    llm_lookups: int = 0
    """Source look-ups the planner made."""
    data_tokens: int = 0
    """Data-model tokens of synthesis steps."""
    data_requests: int = 0
    """Data-model requests sent (cache hits excluded)."""
    data_cache_hits: int = 0
    """Data-model answers from the cache."""
    llm_cost_usd: float = 0.0
    """Backbone and data-model tokens at their configured prices."""


class RunState(Message):
    """Where a run is (progress displays, fault-injection tests)."""

    kind: Literal["run_state"] = "run_state"
    phase: str
    """starting, curate, validate, train, evaluate or diagnose."""
    experiments: int
    """Experiments recorded so far."""


# --- the run record ---------------------------------------------------------------


class Event(Message):
    """One step of a run's iteration-level event log."""

    kind: Literal["event"] = "event"
    t: float
    """Seconds since the run started."""
    event: Literal["run_start", "plan", "curate", "validate", "check", "train", "evaluate", "feedback", "iteration", "release",
                   "finalize", "leak_check"]
    """What happened (``run_start``'s duration is the start-up: actors, imports, the task card; ``validate``
    spans all of a plan's checks, each ``check`` one of them; ``release``
    frees the environment's and the curator's servers before the test; ``finalize`` is the sealed test)."""
    iteration: str | None = None
    """Plan / experiment id it belongs to."""
    duration_s: float | None = None
    """How long the step took, where it has a duration."""
    data: dict[str, Any] = Field(default_factory=dict)
    """Step details (plan hypothesis, check status, losses, scores, findings, decision...)."""
    budget: Usage = Usage()
    """Budget spent so far (train steps, dev evaluations, wall, LLM tokens)."""


class Provenance(Message):
    """Whether the finalized model is the task's base model plus this run's own training."""

    kind: Literal["provenance"] = "provenance"
    ok: bool
    """True when the candidate passed every check."""
    reason: str = ""
    """What failed (empty when ok)."""
    base_model: str
    """The base model the task prescribes."""
    checkpoint_sha256: str | None = None
    """Digest of the finalized checkpoint's files (None: the base model itself)."""


class RunKey(Message):
    """What identifies a run in the store."""

    kind: Literal["run_key"] = "run_key"
    task: str
    """Task id."""
    agent: str
    """Agent name."""
    seed: int
    """Seed."""
    profile: str
    """Profile name."""
    config_hash: str
    """Hash of code version, task spec, agent and profile config."""

    @property
    def slug(self) -> str:
        return f"{self.task}__{self.agent}__s{self.seed}__{self.profile}__{self.config_hash[:10]}"


class Placement(Message):
    """Where a run ran: its node, the GPUs its reservation holds, and what each process saw."""

    kind: Literal["placement"] = "placement"
    node_id: str = ""
    """Ray node id."""
    node_ip: str = ""
    """The node's address."""
    devices: list[str] = Field(default_factory=list)
    """GPU ids of the run's reservation, first bundle first (empty: a CPU run)."""
    device_names: list[str] = Field(default_factory=list)
    """What the devices are (``torch.cuda.get_device_name``; none listed where torch sees no CUDA)."""
    seen: dict[str, str | None] = Field(default_factory=dict)
    """``CUDA_VISIBLE_DEVICES`` in each model-holding process: supervisor, env, trainer, validator."""
    allocators: dict[str, str] = Field(default_factory=dict)
    """The C allocator serving each model-holding process: ``jemalloc`` or ``glibc`` (``resources.allocator``)."""


class RunRecord(Message):
    """Everything a finished (or failed) run leaves behind."""

    kind: Literal["run_record"] = "run_record"

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        """Version 2 records kept resources (workers, GPU, precision) in each plan's train config; since
        version 3 they belong to the profile, so they are dropped on reading (they never changed a score)."""
        if isinstance(data, dict) and data.get("version", SCHEMA_VERSION) < 3:
            for e in data.get("experiments") or []:
                train = (e.get("plan") or {}).get("train")
                for k in LEGACY_TRAIN_FIELDS:
                    if isinstance(train, dict):
                        train.pop(k, None)
        return data

    version: int = SCHEMA_VERSION
    """Schema version of this record."""
    key: RunKey
    """Run identity."""
    status: Literal["ok", "failed"]
    """ok, or failed with ``error``."""
    error: str | None = None
    """Why the run failed."""
    base_model: str
    """The task's base model."""
    direction: Literal["max", "min"] = "max"
    """Whether a higher test score is better for this task."""
    task_spec_hash: str
    """Hash of the task spec."""
    test_sha256: str
    """Content hash of the sealed test split scored."""
    final: Candidate | None = None
    """The candidate finalized on test."""
    fallback_to_base: bool = False
    """True when no valid candidate was produced and the base model was scored."""
    dev: EvalReport | None = None
    """Dev report of the final candidate."""
    test: EvalReport | None = None
    """Test report of the final candidate (never shown to the agent)."""
    experiments: list[Experiment] = Field(default_factory=list)
    """The experiment tree, in creation order."""
    leak: dict[str, float] = Field(default_factory=dict)
    """Share of the run's training examples (input, rationale and answer) overlapping dev / test."""
    leak_flagged: bool = False
    """Training data overlapped the test split above the threshold: kept out of headline statistics."""
    provenance: Provenance | None = None
    """Provenance check of the finalized candidate."""
    provenance_flagged: bool = False
    """The finalized model is not the base model plus this run's own adapter: kept out of headline statistics."""
    events: list[Event] = Field(default_factory=list)
    """Iteration-level event log: plan, curation, each check, training, evaluation, feedback, with timings and budget."""
    usage: Usage = Usage()
    """Budget spent: dev evaluations, train steps, wall seconds, LLM tokens and cost."""
    wall_s: float = 0.0
    """Run wall time."""
    started_at: str = ""
    """ISO time the run started."""
    code_version: str = ""
    """Hash of the ftdojo source tree."""
    prompts: dict[str, str] = Field(default_factory=dict)
    """Hash of each model-facing prompt the run's backbone used (LLM agents)."""
    placement: Placement | None = None
    """Where it ran (a Ray run: node, devices, what each process saw)."""
    peak_rss_mb: dict[str, float] = Field(default_factory=dict)
    """Peak resident memory of each of the run's processes, MiB: ``supervisor`` (with every peer that ran in its
    process) and each peer that ran as its own Ray actor (Ray Train worker processes of a multi-worker fit are
    not counted), each since the run started (a reused process's earlier peaks are not this run's)."""
    memory_bound_mb: float | None = None
    """The most each model-holding process may reach on the host (``actors.validator.memory_bound_mb``: the
    process at the run's start, twice the model's bf16 size, the largest fit's activations and trainable
    state); None for a run on GPUs, whose models are not on the host."""
    over_memory_bound: list[str] = Field(default_factory=list)
    """The processes of ``peak_rss_mb`` above ``memory_bound_mb``."""
    transcript_sha256: str | None = None
    """Hash of the run's transcript file (``runs/<run>.transcript.jsonl``): every request to a language model
    and its answer (LLM agents; none for rule-based ones)."""
    transcript: list[Exchange] = Field(default_factory=list, exclude=True)
    """The exchanges themselves, carried from the run to the bench, which writes them beside the record."""
