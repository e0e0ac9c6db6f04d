"""Shared fixtures: one real local SparkSession per test run, quiet logs, the shared real dump."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    has_gpu = False
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        pass
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def spark():
    """A real local[2] SparkSession with quiet logs, shared by every Spark test."""
    from extraction.spark import SparkConfig, build_spark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = build_spark(
        SparkConfig(
            master="local[2]",
            app_name="reddit-pretrain-tests",
            log_level="ERROR",
            conf={"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false", "spark.sql.shuffle.partitions": "4"},
        )
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def real_dump() -> Path:
    """The first real Pushshift month, present only beside the project's own checkout."""
    path = SHARED_DATA / "RC_2005-12.zst"
    if not path.exists():
        pytest.skip("../shared/data/RC_2005-12.zst is absent (a user's clone has no shared folder)")
    return path
