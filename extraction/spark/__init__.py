"""Building the SparkSession every extraction job uses, and running a job's tasks on it.

Every extraction job is a list of tasks (one dump, one thread bucket, one range of hashes, ...),
each a plain Python function of a small JSON-able dict that reads and writes its own files and
returns a line of counters (``run_tasks``). Spark schedules, places and retries them; the rows
never enter the JVM. Small inputs on one machine run the same functions in this process instead
(``session_for``): starting a JVM and its Python workers costs more seconds than such an input
needs, and the outputs are the same bytes either way.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from reddit_pretrain.errors import UserError


@dataclass
class SparkConfig:
    """How a job gets its SparkSession."""

    master: str | None = "local[*]"
    """Spark master URL. Null keeps what spark-submit set (``--master``), as on a cluster."""
    app_name: str = "reddit-pretrain"
    log_level: str = "WARN"
    """Spark's own log level; WARN keeps the console to our progress lines and errors."""
    conf: dict[str, Any] = field(default_factory=dict)
    """Any other Spark settings, e.g. ``spark.executor.memory: 8g``; on the command line
    ``+spark.conf.spark.driver.memory=3g`` (the dotted key arrives nested and is joined again)."""
    in_process_below_bytes: int = 32 * 2**20
    """A job whose input is smaller than this (compressed bytes) runs its tasks in this process,
    one after the other, without starting Spark, when ``master`` is local (a cluster master, or
    null under spark-submit, always runs Spark). The output is the same bytes. 0: always Spark."""


DEFAULT_CONF = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.showConsoleProgress": "false",  # the jobs print their own progress lines
    "spark.sql.parquet.compression.codec": "zstd",
}


def _local(cfg: SparkConfig) -> bool:
    return bool(cfg.master) and cfg.master.startswith("local")


def spark_settings(conf: dict, prefix: str = "") -> dict[str, str]:
    """``spark.conf`` as flat Spark settings: nested keys joined with dots (``{"spark": {"driver":
    {"memory": "3g"}}}``, as Hydra makes ``+spark.conf.spark.driver.memory=3g``, is ``spark.driver.memory``)."""
    flat: dict[str, str] = {}
    for key, value in conf.items():
        if isinstance(value, dict):
            flat.update(spark_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return flat


LOG_FILE: str | None = None
"""Where Spark's own log goes when this process started a local Spark (printed with any error)."""


def log_hint() -> str | None:
    """The line a job's error message ends with when this process started a local Spark."""
    return f"(Spark's log: {LOG_FILE})" if LOG_FILE else None


_LOG4J = """\
rootLogger.level = info
logger.repl.name = org.apache.spark.repl.Main
logger.repl.level = info
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {path}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
"""

KEEP_LOGS = 20
"""Spark log files kept in ``$TMPDIR/reddit-pretrain-logs`` (the newest; older ones are removed)."""


def prune_logs(folder: str, keep: int = KEEP_LOGS) -> None:
    """Removes all but the ``keep`` newest runs' files (``spark-<time>-<pid>.*``) from ``folder``."""
    runs: dict[str, list[str]] = {}
    for name in os.listdir(folder):
        if name.startswith("spark-"):
            runs.setdefault(name.split(".", 1)[0], []).append(os.path.join(folder, name))
    newest = sorted(runs, key=lambda run: max(os.path.getmtime(p) for p in runs[run]), reverse=True)
    for run in newest[keep:]:
        for path in runs[run]:
            try:
                os.remove(path)
            except OSError:  # another process's, removed already
                pass


def _log_to_file() -> dict[str, str]:
    """Spark settings that send the driver JVM's log (task failures with their Python and Java
    stacks included) to a file instead of the console, whose path ``LOG_FILE`` keeps."""
    import tempfile
    import time

    global LOG_FILE
    folder = os.path.join(tempfile.gettempdir(), "reddit-pretrain-logs")
    os.makedirs(folder, exist_ok=True)
    prune_logs(folder)
    stem = os.path.join(folder, f"spark-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    with open(stem + ".log4j2.properties", "w") as f:
        f.write(_LOG4J.format(path=stem + ".log"))
    LOG_FILE = stem + ".log"
    return {"spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{stem}.log4j2.properties"}


class SparkStartError(UserError, RuntimeError):
    """The local JVM did not start (no Java, too little memory, a bad setting): its own words are
    in the log file the message names."""


def _start_with_stderr_in(path: str, start: Callable):
    """Calls ``start`` (which launches the JVM) with file descriptor 2 pointing at ``path``: the JVM
    inherits it, so what it prints outside its logger (the JVM's module warning, Spark's start-up
    lines) goes to the log file, not the console. This process's stderr is restored after."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
        return start()
    except Exception as err:
        raise SparkStartError(f"Spark did not start ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                              f"its output is in {path}") from err
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def build_spark(cfg: SparkConfig):
    """Returns the active SparkSession, creating one from ``cfg`` if there is none. A local Spark
    started here logs to a file (``LOG_FILE``): the console keeps the jobs' own lines."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    if _local(cfg):
        # A single machine: bind to loopback rather than whatever the hostname resolves to.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(cfg.app_name)
    if cfg.master:
        builder = builder.master(cfg.master)
    defaults = dict(DEFAULT_CONF)
    if os.environ.get("REDDIT_PRETRAIN_RULES"):  # the user's own rules (extraction.sessions.filters.add_rule), on the executors too
        defaults["spark.executorEnv.REDDIT_PRETRAIN_RULES"] = os.environ["REDDIT_PRETRAIN_RULES"]
    settings = spark_settings(cfg.conf)
    to_file = _local(cfg) and SparkSession.getActiveSession() is None and "spark.driver.extraJavaOptions" not in settings
    if to_file:
        defaults.update(_log_to_file())
    # Spark's default driver memory (1g) is enough: the jobs' rows stay in the Python tasks
    # (Arrow and Parquet written by pyarrow), the JVM only schedules them.
    for key, value in {**defaults, **settings}.items():
        builder = builder.config(key, str(value))
    spark = _start_with_stderr_in(LOG_FILE, builder.getOrCreate) if to_file else builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    return spark


def session_for(cfg: SparkConfig, input_bytes: int, spark=None):
    """The SparkSession a job runs on: ``spark`` when given, None (this process, ``run_tasks``)
    for a small input on a local master, else ``build_spark(cfg)``."""
    if spark is not None:
        return spark
    if _local(cfg) and input_bytes < cfg.in_process_below_bytes:
        return None
    return build_spark(cfg)


def where(spark, workers: int = 1) -> str:
    """Where a job's tasks run, for its progress line (``workers``: processes of the in-process runner)."""
    if spark is None:
        pool = f", {workers} worker processes" if workers > 1 else ""
        return f"in this process (a small input: no Spark; spark.in_process_below_bytes{pool})"
    return f"on Spark {spark.sparkContext.master} ({spark.sparkContext.defaultParallelism} cores)"


def cores(spark) -> int:
    return 1 if spark is None else spark.sparkContext.defaultParallelism


def local_cores(cfg: SparkConfig) -> int:
    """The cores a local master gives (``local``: 1, ``local[N]``/``local[N,F]``: N, ``local[*]``:
    this machine's); 1 for any other master."""
    import re

    match = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\d+)?\])?", cfg.master or "")
    if not match:
        return 1
    if match.group(1) == "*":
        return os.cpu_count() or 1
    return int(match.group(1) or 1)


def run_tasks(spark, description: str, tasks: list[dict], fn: Callable[[dict], tuple[dict, bytes | None]],
              workers: int = 1) -> list[tuple[dict, bytes | None]]:
    """Runs ``fn(task)`` for each task dict, one Spark task each (one Spark job), or in this process
    when ``spark`` is None (one after the other, or in a pool of ``workers`` fresh processes);
    returns the (JSON result, bytes) pairs in the order of ``tasks`` (Spark collects partitions in
    order). The rows the tasks work on never pass through Spark: the tasks read and write files
    themselves."""
    if not tasks:
        return []
    if spark is None:
        tasks = [json.loads(json.dumps(task)) for task in tasks]
        if workers > 1 and len(tasks) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: a fresh interpreter, not a fork of one whose threads (Arrow's, a JVM's) may hold locks
            with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context("spawn")) as pool:
                return list(pool.map(fn, tasks))
        return [fn(task) for task in tasks]
    sc = spark.sparkContext
    sc.setJobDescription(description)
    # A plain RDD of the task texts, mapped and collected: a DataFrame with mapInArrow ran the same
    # tasks but cost about 0.15 s more per job in query planning and Arrow batches for a few dicts.
    texts = [json.dumps(t) for t in tasks]
    return sc.parallelize(texts, len(texts)).map(functools.partial(_run_one, fn)).collect()


def _run_one(fn: Callable[[dict], tuple[dict, bytes | None]], text: str) -> tuple[dict, bytes | None]:
    result, blob = fn(json.loads(text))
    return json.loads(json.dumps(result)), blob
