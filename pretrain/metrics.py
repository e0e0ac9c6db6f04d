"""What a run records: the metrics file (one JSON line per record) and TensorBoard, and the
arithmetic behind tokens/s and MFU (FLOPs per token, model FLOPs utilisation)."""

from __future__ import annotations

import json
import math
import os
import time

from pretrain.config import TrainConfig


def truncate_metrics(path: str, step: int) -> None:
    """Drops the records of ``metrics.jsonl`` after ``step`` (a resume from that step: what a stopped
    run wrote after its last checkpoint would make the curves run twice over the same steps)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except ValueError:
            continue  # a line cut short by the stop
    if len(kept) != len(lines):
        with open(path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(path + ".tmp", path)


def strict_record(record: dict) -> dict:
    """``record`` as strict JSON takes it: a value that is not a finite number (a NaN or infinite
    loss) is written as null and named in ``not_finite`` with what it was (``"nan"``, ``"inf"``,
    ``"-inf"``); Python's json would write a bare ``NaN``, which strict readers (jq, browsers, most
    languages' parsers) refuse."""
    bad = {k: str(v) for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)}
    if not bad:
        return record
    return {**{k: None if k in bad else v for k, v in record.items()}, "not_finite": bad}


def metric(record: dict, key: str) -> float | None:
    """A number of a metrics.jsonl record as a float (NaN or infinite where ``not_finite`` says so),
    None when absent."""
    if key in record.get("not_finite", {}):
        return float(record["not_finite"][key])
    value = record.get(key)
    return None if value is None else float(value)


class MetricsLogger:
    """Appends records to ``<out_dir>/metrics.jsonl`` (rank 0) and mirrors numbers to TensorBoard."""

    def __init__(self, cfg: TrainConfig, rank: int):
        self.rank = rank
        self.path = os.path.join(cfg.trainer.out_dir, "metrics.jsonl")
        self.tb = None
        if rank == 0:
            os.makedirs(cfg.trainer.out_dir, exist_ok=True)
            if cfg.trainer.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self.tb = SummaryWriter(os.path.join(cfg.trainer.out_dir, "tensorboard"))
                except ImportError:
                    self.tb = None

    def log(self, record: dict) -> None:
        if self.rank != 0:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(strict_record(record), allow_nan=False) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if key not in ("step", "kind") and isinstance(value, (int, float)) and value is not None:
                    self.tb.add_scalar(f"{record['kind']}/{key}", value, record["step"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def num_parameters(model) -> int:
    """Parameter count, also under ZeRO-3 where each rank holds only a partition."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())


def flops_per_token(model, seq_len: int) -> tuple[float, float]:
    """(FLOPs per token without the LM head, FLOPs of the LM head per target token): PaLM's
    6 N + 12 L H Q T, split because logits are computed only where there is a target."""
    c = model.config
    head = 6 * c.n_embd * c.vocab_size
    return 6 * num_parameters(model) - head + 12 * c.n_layer * c.n_head * (c.n_embd // c.n_head) * seq_len, head


def model_flops_utilisation(flops: tuple[float, float], tokens: int, targets: int, seconds: float, world: int,
                            peak_flops_per_gpu: float) -> float:
    """MFU of ``tokens`` tokens, ``targets`` of them with a target, in ``seconds`` on ``world`` GPUs;
    ``flops`` as ``flops_per_token`` gives them."""
    per_token, per_target = flops
    return (per_token * tokens + per_target * targets) / max(seconds, 1e-9) / (world * peak_flops_per_gpu)


class Throughput:
    """Tokens per second, and on GPUs the model FLOPs utilisation, over the steps since the last
    reading (``read``, at each log line). Tokens are the input positions that are not padding (a
    padded row counts its session's tokens, not its length)."""

    def __init__(self, model, seq_len: int, world: int, peak_flops_per_gpu: float, on_gpu: bool):
        self.flops = flops_per_token(model, seq_len)
        self.world, self.peak, self.on_gpu = world, peak_flops_per_gpu, on_gpu
        self.start, self.tokens, self.targets = time.time(), 0, 0

    def add(self, tokens: int, targets: int) -> None:
        self.tokens += tokens
        self.targets += targets

    def read(self) -> dict:
        elapsed = time.time() - self.start
        out = {"tokens_per_s": self.tokens / max(elapsed, 1e-9)}
        if self.on_gpu:
            out["mfu"] = model_flops_utilisation(self.flops, self.tokens, self.targets, elapsed, self.world, self.peak)
        self.start, self.tokens, self.targets = time.time(), 0, 0
        return out
