"""metrics.jsonl is strict JSON: a loss that is not finite is written as null and named, and the
curves still draw from it."""

import json
import math

from pretrain.config import TrainConfig, TrainerConfig
from pretrain.curves import plot_curves
from pretrain.metrics import MetricsLogger, metric


def _refuse(constant: str):
    raise ValueError(f"not strict JSON: {constant}")


def test_a_loss_that_is_not_finite_is_null_and_named(tmp_path):
    logger = MetricsLogger(TrainConfig(trainer=TrainerConfig(out_dir=str(tmp_path), tensorboard=False)), rank=0)
    logger.log({"kind": "train", "step": 1, "loss": 3.5, "lr": 1e-3})
    logger.log({"kind": "train", "step": 2, "loss": float("nan"), "lr": 1e-3, "grad_norm": float("inf")})
    logger.log({"kind": "valid", "step": 2, "valid_loss": float("-inf")})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line, parse_constant=_refuse) for line in lines]  # strict readers refuse NaN/Infinity
    assert records[0] == {"kind": "train", "step": 1, "loss": 3.5, "lr": 1e-3}  # finite records unchanged
    assert records[1]["loss"] is None and records[1]["grad_norm"] is None and records[1]["lr"] == 1e-3
    assert records[1]["not_finite"] == {"loss": "nan", "grad_norm": "inf"}
    assert math.isnan(metric(records[1], "loss")) and metric(records[1], "grad_norm") == math.inf
    assert metric(records[2], "valid_loss") == -math.inf and metric(records[0], "loss") == 3.5
    assert metric(records[0], "valid_loss") is None
    png = plot_curves(str(tmp_path / "metrics.jsonl"), str(tmp_path / "curves.png"))
    assert open(png, "rb").read(4) == b"\x89PNG"
