"""Typed training configuration (registered with Hydra's ConfigStore; conf/ only picks values),
and the DeepSpeed config derived from it.

The batch arithmetic lives in one place, ``BatchSizes``: micro batch per GPU x gradient
accumulation x world size = global batch, checked against ``trainer.global_batch_size`` when set.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional

from pretrain.launch import signal_problem
from reddit_pretrain.errors import UserError


MODES = ("packed", "padded", "packed_sessions")
"""``data.mode``'s values (``DataConfig.mode`` says what each does)."""


class ConfigError(UserError, ValueError):
    """A configuration that cannot train; raised before any step runs."""


@dataclass
class ModelConfig:
    """A GPT-2 (transformers GPT2LMHeadModel) and where its weights come from."""

    name: str = "tiny"
    init: str = "scratch"
    """``scratch`` (GPT2Config below, vocab and EOS from the shard manifest), ``pretrained`` (a Hugging
    Face GPT-2/DialoGPT checkpoint: local path or hub name in ``pretrained``), or ``resume`` (our
    checkpoint: ``trainer.resume_from``, or the latest one in the run's folder)."""
    pretrained: str | None = None
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    n_positions: int = 1024
    """Length of the position table: the longest prompt plus reply the model accepts (GPT-2 and
    DialoGPT: 1024). Training windows are ``data.seq_len``, which may be shorter."""
    dropout: float = 0.0
    """Applied to embeddings, attention and residuals (GPT-2 used 0.1)."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    compile: bool = False
    """torch.compile each transformer block (static shapes; the LM head stays eager, since it runs on
    the positions that have a target). ZeRO stage 0-2; the first steps pay the compilation."""


@dataclass
class SourceConfig:
    """One shard set of a mixture (``data.sources``) and its weight."""

    path: str = ""
    weight: float = 1.0


@dataclass
class DataConfig:
    """Token shards (reddit_pretrain.shards) and how samples are cut from them."""

    shards: str = "out/shards"
    """The shard set to train on (the tokenize job's output); ``sources`` instead for a mixture."""
    sources: list[SourceConfig] = field(default_factory=list)
    """A mixture of shard sets of one tokenizer, each a path and a weight:
    ``'data.sources=[{path:out/shards_2015,weight:0.7},{path:out/shards_2016,weight:0.3}]'``. Each
    sample's shard set is drawn from the seed in proportion to the weights (``pretrain.data.Mixture``);
    one used up before the run ends is repeated, and the log says how many epochs each ran. The
    model, tokenizer and checksums come from the first. Empty: ``shards`` alone."""
    mode: str = "packed"
    """``packed``: fixed windows of ``seq_len`` across document boundaries (nanoGPT); a reply attends
    to the sessions packed before it. ``padded``: one session per sample, right-padded to ``seq_len``
    (DialoGPT). ``packed_sessions``: whole sessions packed greedily, in shard order, into rows of
    ``seq_len`` (the rest of a row padded), each token attending only to its own session (a
    block-diagonal causal mask) with positions restarting at each session: no padding wasted on
    short sessions, no context leaked between them. A session longer than ``seq_len`` keeps its last
    tokens, as in ``padded``."""
    seq_len: int = 128
    use_loss_mask: bool = True
    """No loss on the first turn of each session (DialoGPT)."""
    train_split: str = "train"
    valid_split: str = "valid"
    verify_checksums: bool = True
    """Check every shard file's sha256 against the manifest before training (corrupt data is never
    used silently). Once per node: the node's processes split the files and hash them in threads
    (BENCHMARKS.md gives the cost); false skips it (sizes and counts are always checked)."""

    def mixture(self) -> list[tuple[str, float]]:
        """(path, weight) of each shard set the run reads: ``sources``, else ``shards`` with weight 1."""
        return [(s.path, float(s.weight)) for s in self.sources] or [(self.shards, 1.0)]


@dataclass
class OptimizerConfig:
    name: str = "adamw"
    """``adamw`` (torch's fused/foreach AdamW; DeepSpeedCPUAdam when the optimizer is offloaded):
    the one optimizer the trainer builds. Any other name fails before training."""
    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1

    def build(self, model, offload: bool):
        """AdamW over ``model``'s parameters, weight decay on the matrices (ndim >= 2) only, not on
        biases and norms; DeepSpeedCPUAdam when ZeRO offloads the optimizer to the CPU."""
        import torch

        decay = [p for _, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for _, p in model.named_parameters() if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if offload:
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            return DeepSpeedCPUAdam(groups, lr=self.lr, betas=tuple(self.betas), eps=self.eps, adamw_mode=True)
        return torch.optim.AdamW(groups, lr=self.lr, betas=tuple(self.betas), eps=self.eps)


@dataclass
class SchedulerConfig:
    name: str = "cosine"
    """``cosine`` or ``linear`` decay after linear warmup, or ``noam`` (DialoGPT: warmup then 1/sqrt(step))."""
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    """cosine/linear: the learning rate decays to lr x this at max_steps."""

    def factor(self, step: int, max_steps: int) -> float:
        """The learning rate at ``step`` (from 0) as a fraction of ``optimizer.lr``."""
        if self.name == "noam":
            warm = max(1, self.warmup_steps)
            return min((step + 1) / warm, math.sqrt(warm / (step + 1)))
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, max_steps - self.warmup_steps))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if self.name == "cosine" else 1 - progress
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * shape

    def build(self, optimizer, max_steps: int):
        """torch's LambdaLR of ``factor`` (a plain function, so the scheduler's state holds no code)."""
        import torch

        def factor(step: int) -> float:
            return self.factor(step, max_steps)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class DeepSpeedConfig:
    zero_stage: int = 2
    offload_optimizer: bool = False
    """ZeRO-Offload: optimizer state and step on the CPU (stage >= 1; uses DeepSpeedCPUAdam)."""
    offload_params: bool = False
    """ZeRO-Infinity style parameter offload to the CPU (stage 3 only)."""
    precision: str = "auto"
    """``fp32``, ``bf16``, ``fp16``, or ``auto`` (bf16 on a GPU that has it, else fp32)."""
    gradient_clipping: float = 1.0
    dist_backend: str = "auto"
    """``auto``: nccl on GPUs, gloo on CPUs."""


CALLBACKS = {"evaluation": "pretrain.callbacks:Evaluation", "samples": "pretrain.callbacks:Samples",
             "checkpointing": "pretrain.callbacks:Checkpointing"}
"""The trainer's own callbacks, in the order they run after a step (``trainer.callbacks``)."""


@dataclass
class TrainerConfig:
    out_dir: str = "out/train"
    micro_batch_size_per_gpu: int = 4
    gradient_accumulation_steps: int = 1
    global_batch_size: int | None = None
    """Optional check: must equal micro batch x accumulation x world size."""
    max_steps: int = 100
    seed: int = 1234
    log_interval: int = 10
    eval_interval: int = 50
    eval_batches: int = 10
    sample_interval: int = 0
    """Steps between sample replies (0: only at the end)."""
    sample_prompts: list[str] = field(default_factory=lambda: ["What do you think of the new phone?", "Any good books?"])
    sample_max_new_tokens: int = 24
    checkpoint_interval: int = 50
    keep_last: int = 2
    """Complete checkpoints kept (the newest); at least 1."""
    resume_from: str | None = None
    resume_with_new_data: bool = False
    """Resume onto shards other than the checkpoint's (same tokenizer): the data order restarts from
    their first sample. Without it such a resume is refused (the saved data position would apply to
    other data)."""
    overwrite: bool = False
    """Start over in a ``trainer.out_dir`` that holds an earlier run: its checkpoints, metrics and
    logs are deleted first. Without it (and without ``model.init=resume``) such a folder is refused."""
    stop_signals: list[str] = field(default_factory=lambda: ["SIGUSR1"])
    """Signals after which every rank finishes its step, a checkpoint is written and the trainer exits
    with status 3 (``pretrain.launch.STOPPED_EXIT``): Slurm's ``--signal=USR1@300`` before the time
    limit, so that ``jobs/train_slurm.sbatch`` requeues the job and the next one resumes. Add SIGTERM
    for a preemption with a grace time (``[SIGUSR1,SIGTERM]``); ``[]`` keeps every signal's default."""
    max_nonfinite_steps: int = 3
    """Steps in a row whose loss is NaN or infinite after which training stops with one line (exit
    status 2); a run whose last step's loss is not finite fails too. No checkpoint is written of a
    step whose loss or weights are not finite, so ``latest`` stays the last finite one. fp16's skipped
    steps (a loss-scale overflow) have a finite loss and do not count."""
    tensorboard: bool = True
    callbacks: dict[str, Optional[str]] = field(default_factory=lambda: dict(CALLBACKS))
    """What runs between steps when due, in this order: a name -> its class (``module:Class``, a
    ``pretrain.callbacks.Callback``), or null to switch one off. Yours is one entry:
    ``+trainer.callbacks.mine=my_package.module:MyCallback``; ``trainer.callbacks.samples=null``
    turns the sample replies off."""
    peak_flops_per_gpu: float = 989e12
    """For MFU: dense bf16 peak of one GPU (H100 SXM: 989 TFLOP/s)."""


@dataclass
class ExperimentConfig:
    name: str = "default"
    notes: str = ""


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    def validate(self) -> None:
        m, d, ds, t = self.model, self.data, self.deepspeed, self.trainer
        at_least = {
            "model.n_layer": (m.n_layer, 1), "model.n_head": (m.n_head, 1), "model.n_embd": (m.n_embd, 1),
            "model.n_positions": (m.n_positions, 1), "data.seq_len": (d.seq_len, 1),
            "trainer.micro_batch_size_per_gpu": (t.micro_batch_size_per_gpu, 1),
            "trainer.gradient_accumulation_steps": (t.gradient_accumulation_steps, 1), "trainer.max_steps": (t.max_steps, 1),
            "trainer.log_interval": (t.log_interval, 1), "trainer.eval_interval": (t.eval_interval, 1),
            "trainer.eval_batches": (t.eval_batches, 1), "trainer.checkpoint_interval": (t.checkpoint_interval, 1),
            "trainer.keep_last": (t.keep_last, 1), "trainer.sample_interval": (t.sample_interval, 0),
            "trainer.sample_max_new_tokens": (t.sample_max_new_tokens, 1), "trainer.max_nonfinite_steps": (t.max_nonfinite_steps, 1), "scheduler.warmup_steps": (self.scheduler.warmup_steps, 0),
        }
        for key, (value, low) in at_least.items():
            if value < low:
                raise ConfigError(f"{key} must be >= {low}, not {value}")
        for name, target in t.callbacks.items():
            if target is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", target):
                raise ConfigError(f"trainer.callbacks.{name} must name a class as module:Class (or be null), not {target!r}")
        if m.init not in ("scratch", "pretrained", "resume"):
            raise ConfigError(f"model.init must be scratch, pretrained or resume, not {m.init!r}")
        if m.init == "pretrained" and not m.pretrained:
            raise ConfigError("model.init=pretrained needs model.pretrained (a local path or hub name)")
        if m.n_embd % m.n_head:
            raise ConfigError(f"model.n_embd ({m.n_embd}) must be divisible by model.n_head ({m.n_head})")
        for source in d.sources:
            if not source.path or not (math.isfinite(source.weight) and source.weight > 0):
                raise ConfigError(f"data.sources: each needs a path and a weight > 0, not {{path: {source.path!r}, "
                                  f"weight: {source.weight}}}")
        paths = [s.path for s in d.sources]
        if len(set(paths)) != len(paths):
            raise ConfigError(f"data.sources names a shard set twice ({sorted(p for p in paths if paths.count(p) > 1)[0]}): "
                              "give it one entry with the sum of the weights")
        if d.mode not in MODES:
            raise ConfigError(f"data.mode must be {', '.join(MODES[:-1])} or {MODES[-1]}, not {d.mode!r}")
        if d.seq_len > m.n_positions:
            raise ConfigError(f"data.seq_len ({d.seq_len}) exceeds model.n_positions ({m.n_positions})")
        if ds.zero_stage not in (0, 1, 2, 3):
            raise ConfigError(f"deepspeed.zero_stage must be 0-3, not {ds.zero_stage}")
        if m.compile and ds.zero_stage == 3:
            raise ConfigError("model.compile needs zero_stage 0-2 (ZeRO-3 gathers parameters in module hooks)")
        if ds.offload_params and ds.zero_stage != 3:
            raise ConfigError("deepspeed.offload_params needs zero_stage 3")
        if ds.offload_optimizer and ds.zero_stage == 0:
            raise ConfigError("deepspeed.offload_optimizer needs zero_stage >= 1")
        if ds.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"deepspeed.precision must be auto, fp32, bf16 or fp16, not {ds.precision!r}")
        if self.optimizer.name != "adamw":
            raise ConfigError(f"optimizer.name must be adamw (the one optimizer the trainer builds), not {self.optimizer.name!r}")
        if self.scheduler.name not in ("cosine", "linear", "noam"):
            raise ConfigError(f"scheduler.name must be cosine, linear or noam, not {self.scheduler.name!r}")
        for name in t.stop_signals:
            if signal_problem(name):
                raise ConfigError(f"trainer.stop_signals: {signal_problem(name)}")
        if t.global_batch_size is not None and t.global_batch_size < 1:
            raise ConfigError(f"trainer.global_batch_size must be >= 1 (or null), not {t.global_batch_size}")
        if not 0 <= m.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), not {m.dropout}")
        if not self.optimizer.lr > 0 or self.optimizer.eps <= 0 or self.optimizer.weight_decay < 0:
            raise ConfigError("optimizer.lr and optimizer.eps must be > 0 and optimizer.weight_decay >= 0")
        if len(self.optimizer.betas) != 2 or not all(0 <= b < 1 for b in self.optimizer.betas):
            raise ConfigError(f"optimizer.betas must be two numbers in [0, 1), not {list(self.optimizer.betas)}")
        if not 0 <= self.scheduler.min_lr_ratio <= 1:
            raise ConfigError(f"scheduler.min_lr_ratio must be in [0, 1], not {self.scheduler.min_lr_ratio}")
        if ds.gradient_clipping < 0:
            raise ConfigError(f"deepspeed.gradient_clipping must be >= 0 (0: off), not {ds.gradient_clipping}")
        if not t.peak_flops_per_gpu > 0:
            raise ConfigError(f"trainer.peak_flops_per_gpu must be > 0, not {t.peak_flops_per_gpu}")


@dataclass(frozen=True)
class BatchSizes:
    micro_batch_size_per_gpu: int
    gradient_accumulation_steps: int
    world_size: int

    @property
    def global_batch_size(self) -> int:
        return self.micro_batch_size_per_gpu * self.gradient_accumulation_steps * self.world_size

    @classmethod
    def derive(cls, trainer: TrainerConfig, world_size: int) -> "BatchSizes":
        sizes = cls(trainer.micro_batch_size_per_gpu, trainer.gradient_accumulation_steps, world_size)
        if trainer.global_batch_size is not None and trainer.global_batch_size != sizes.global_batch_size:
            raise ConfigError(
                f"batch arithmetic: micro_batch_size_per_gpu {sizes.micro_batch_size_per_gpu} x "
                f"gradient_accumulation_steps {sizes.gradient_accumulation_steps} x world size {world_size} = "
                f"{sizes.global_batch_size}, not trainer.global_batch_size {trainer.global_batch_size}"
            )
        return sizes


def resolve_precision(cfg: DeepSpeedConfig, on_gpu: bool, bf16_supported: bool) -> str:
    if cfg.precision == "auto":
        return "bf16" if on_gpu and bf16_supported else "fp32"
    if cfg.precision in ("bf16", "fp16") and not on_gpu:
        raise ConfigError(f"deepspeed.precision={cfg.precision} needs a GPU; use fp32 (or auto) on CPUs")
    return cfg.precision


def deepspeed_config(cfg: TrainConfig, batch: BatchSizes, precision: str, load_universal: bool = False) -> dict:
    """The DeepSpeed JSON, derived from the typed config (never hand-edited); ``load_universal``: the
    checkpoint to resume is in DeepSpeed's universal layout (a resume on another world size)."""
    ds = cfg.deepspeed
    zero: dict = {"stage": ds.zero_stage}
    if ds.zero_stage >= 1:
        zero.update({"contiguous_gradients": True, "overlap_comm": False, "reduce_scatter": True})
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if ds.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_batch_size": batch.global_batch_size,
        "train_micro_batch_size_per_gpu": batch.micro_batch_size_per_gpu,
        "gradient_accumulation_steps": batch.gradient_accumulation_steps,
        "gradient_clipping": ds.gradient_clipping,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "initial_scale_power": 16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
        **({"checkpoint": {"load_universal": True}} if load_universal else {}),
    }


GROUPS = {"model": ModelConfig, "data": DataConfig, "optimizer": OptimizerConfig, "scheduler": SchedulerConfig,
          "deepspeed": DeepSpeedConfig, "trainer": TrainerConfig, "experiment": ExperimentConfig}
"""The config groups of conf/train.yaml and their typed schemas."""


def register_configs() -> None:
    from reddit_pretrain.hydra_job import register_schemas

    register_schemas("train", TrainConfig, GROUPS)
