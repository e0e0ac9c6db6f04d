"""Training and validation curves from metrics.jsonl, as a PNG."""

from __future__ import annotations

import json
import os

from pretrain.metrics import metric


def plot_curves(metrics_path: str, png_path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, valid = [], []
    with open(metrics_path) as f:
        for line in f:
            record = json.loads(line)
            if record["kind"] == "train":
                train.append(record)
            elif record["kind"] == "valid":
                valid.append(record)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.plot([r["step"] for r in train], [metric(r, "loss") for r in train], label="train loss", color="#2980b9")
    left.plot([r["step"] for r in valid], [metric(r, "valid_loss") for r in valid], "o-", label="valid loss", color="#c0392b")
    left.set_xlabel("step")
    left.set_ylabel("cross-entropy (nats/token)")
    left.legend()
    left.set_title("loss")
    right.plot([r["step"] for r in train], [r["lr"] for r in train], color="#27ae60")
    right.set_xlabel("step")
    right.set_title("learning rate")
    fig.tight_layout()
    tmp = png_path + ".tmp.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path
