"""Building the SparkSession every extraction job uses."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field


@dataclass
class SparkConfig:
    """How a job gets its SparkSession."""

    master: str | None = "local[*]"
    """Spark master URL. Null keeps what spark-submit set (``--master``), as on a cluster."""
    app_name: str = "reddit-pretrain"
    log_level: str = "WARN"
    """Spark's own log level; WARN keeps the console to our progress lines and errors."""
    conf: dict[str, str] = field(default_factory=dict)
    """Any other Spark settings, e.g. ``spark.executor.memory: 8g``."""


DEFAULT_CONF = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.showConsoleProgress": "false",  # the jobs print their own progress lines
    "spark.sql.parquet.compression.codec": "zstd",
}


def build_spark(cfg: SparkConfig):
    """Returns the active SparkSession, creating one from ``cfg`` if there is none."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    if cfg.master and cfg.master.startswith("local"):
        # A single machine: bind to loopback rather than whatever the hostname resolves to.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(cfg.app_name)
    if cfg.master:
        builder = builder.master(cfg.master)
    defaults = dict(DEFAULT_CONF)
    # Spark's default driver memory (1g) is enough: the jobs' rows stay in the Python tasks
    # (Arrow and Parquet written by pyarrow), the JVM only schedules them.
    for key, value in {**defaults, **cfg.conf}.items():
        builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    return spark
