"""Shared fixtures: one real local SparkSession per test run (slow tests only), quiet logs, the
shared real dump, and a small extracted month with its tokenizer and shards, made by the jobs'
in-process path (no Spark: the same bytes, which the slow tests check)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
os.environ.setdefault("REDDIT_PRETRAIN_SALT", "the tests' salt")  # pseudonyms without a salt file in the user's home


def pytest_collection_modifyitems(config, items):
    # The fast suite never starts Spark: a test that needs the SparkSession is a slow test.
    fast_with_spark = [item.nodeid for item in items if "slow" not in item.keywords and "spark" in getattr(item, "fixturenames", ())]
    if fast_with_spark:
        raise pytest.UsageError(f"tests without the slow marker use the spark fixture: {fast_with_spark}")
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


@pytest.fixture(scope="session")
def extracted(tmp_path_factory):
    """A small generated month taken through ingest and extract once per test run."""
    from extraction.sessions.chains import SplitConfig
    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.sessions.filters import FiltersConfig
    from extraction.ingest.job import IngestConfig, run_ingest
    from reddit_pretrain_app.synth import SynthConfig, write_month

    root = tmp_path_factory.mktemp("pipeline")
    write_month(str(root / "dumps"), SynthConfig(comments=12_000, seed=41))
    run_ingest(IngestConfig(inputs=[str(root / "dumps" / "*.zst")], output=str(root / "ingest")))
    run_extract(ExtractConfig(input=str(root / "ingest"), output=str(root / "extract"),
                              filters=FiltersConfig(bland_min_count=20),
                              split=SplitConfig(valid_fraction=0.1, test_fraction=0.05)))
    return root


@pytest.fixture(scope="session")
def tokenizer_dir(extracted):
    """A byte-level BPE tokenizer trained on the train split of ``extracted``."""
    from extraction.tokenize.train_tokenizer import train_tokenizer

    return train_tokenizer(str(extracted / "extract" / "sessions"), str(extracted / "tokenizer"), vocab_size=600)


@pytest.fixture(scope="session")
def shards_dir(extracted, tokenizer_dir):
    """Token shards of ``extracted``, made by the tokenize job with the trained tokenizer."""
    from extraction.tokenize.job import TokenizeConfig, run_tokenize

    out = extracted / "shards"
    run_tokenize(TokenizeConfig(input=str(extracted / "extract"), output=str(out), tokenizer=tokenizer_dir,
                                max_session_tokens=256, tokens_per_shard=100_000))
    return out


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(bytes)``: a fresh tmpfs of that size mounted in ``tmp_path`` (a full disk, for
    real); unmounted after the test. Skips where mounting is not allowed (not root)."""
    import subprocess

    mounted = []

    def make(size_bytes: int, name: str = "disk") -> Path:
        point = tmp_path / name
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(point)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip() or 'not root'})")
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def used_bytes(folder: Path) -> int:
    """Bytes in use on the filesystem of ``folder`` (what a failed job must give back)."""
    stat = os.statvfs(folder)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize
