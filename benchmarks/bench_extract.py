"""Extraction end to end (ingest + extract, every default rule, report and rejects) against the floor.

    python benchmarks/bench_extract.py [--comments 1000000] [--scale 4] [--small 4000] [--cores 2] [--event-log DIR]

In one run, on generated months (one megathread of up to 100k comments, one r/counting chain of up to
3,000; ``bland_min_count`` scaled to the input, comments/4000):

* the floor: zstd decompression + ``orjson.loads`` of every line of the same RC dump, one process;
* ingest + extract of ``--comments`` and of ``--scale`` times as many, ``local[--cores]``, timed from
  a started SparkSession to the committed outputs: comments/s per core and that as a fraction of
  the floor, seconds per comment against the main run, peak memory (the largest sum of resident
  memory of this process, the Spark JVM and its Python workers, sampled every 0.2 s), and the
  task seconds of each stage;
* the whole commands a user types (``python -m extraction.ingest.job ...``, then ``python -m
  extraction.sessions.job ...``), and the one command that runs both on one Spark session
  (``python -m reddit_pretrain_app.pipeline input=[...] stop_after=extract``), Spark start-up included,
  on the main month and on a ``--small`` one.

With ``--event-log DIR`` Spark's event log of the main run is kept and summarised (jobs, task
seconds per job). Prints tables and writes benchmarks/results/extract.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import floor, synthetic_month, table, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class PeakMemory:
    """Largest sum of resident memory of this process (or ``process``) and all its children (the
    Spark JVM and its Python workers), sampled every 0.2 s; also the largest of each part on its own."""

    def __init__(self, process=None):
        import psutil

        self.process = process or psutil.Process()
        self.peak = 0
        self.parts = {"driver": 0, "jvm": 0, "workers": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            parts = dict.fromkeys(self.parts, 0)
            for p in [self.process] + self.process.children(recursive=True):
                try:
                    kind = "driver" if p.pid == self.process.pid else "jvm" if "java" in p.name() else "workers"
                    parts[kind] += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, sum(parts.values()))
            self.parts = {k: max(v, parts[k]) for k, v in self.parts.items()}
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def month(comments: int) -> Path:
    return synthetic_month(comments, seed=0, megathreads=1, megathread_comments=min(100_000, comments // 10),
                           deep_chains=1, deep_chain_depth=min(3_000, comments // 100))


def run(spark, folder: Path, comments: int, cores: int, overrides: dict | None = None) -> dict:
    """Ingest + extract of ``folder`` on ``spark``; ``overrides``: extract settings (``filters.x``,
    ``privacy.x``) to change."""
    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.sessions.filters import FiltersConfig
    from extraction.ingest.job import IngestConfig, run_ingest

    out = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        with PeakMemory() as memory:
            started = time.perf_counter()
            ingest = run_ingest(IngestConfig(inputs=[str(folder / "*.zst")], output=str(out / "ingest")), spark)
            middle = time.perf_counter()
            cfg = ExtractConfig(input=str(out / "ingest"), output=str(out / "extract"),
                                filters=FiltersConfig(bland_min_count=max(20, comments // 4000)))
            for key, value in (overrides or {}).items():
                section, name = key.split(".")
                setattr(getattr(cfg, section), name, value)
            report = run_extract(cfg, spark)
            done = time.perf_counter()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    n = ingest["totals"]["comments_rows"]
    seconds = done - started
    import zstandard

    def history(f: dict) -> int:  # what a zstd decoder of this dump must keep: its window, or the whole file if smaller
        with open(f["path"], "rb") as dump:
            return min(zstandard.get_frame_parameters(dump.read(18)).window_size, f["decompressed_bytes"])
    return {"comments": n, "ingest_s": middle - started, "extract_s": done - middle, "seconds": seconds,
            "comments_per_s_per_core": n / seconds / cores, "sessions_kept": report["sessions"]["kept"],
            "peak_memory_gib": memory.peak / 2**30, "tasks": report["tasks"],
            **{f"peak_{k}_gib": v / 2**30 for k, v in memory.parts.items()},
            "zstd_window_gib": max(history(f) for f in ingest["files"]) / 2**30,
            "stage_seconds": report["stage_seconds"], "job_seconds": report["job_seconds"]}


def commands(folder: Path, comments: int, cores: int) -> dict:
    """The two commands as a user runs them, each starting its own Spark."""
    out = Path(tempfile.mkdtemp(prefix="bench-commands-"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    spark = [f"spark.master='local[{cores}]'"]  # quoted: brackets are Hydra list syntax
    try:
        started = time.perf_counter()
        for args in (["extraction.ingest.job", f"inputs=[{folder}/RC_2015-01.zst,{folder}/RS_2015-01.zst]", f"output={out}/ingest"],
                     ["extraction.sessions.job", f"input={out}/ingest", f"output={out}/extract",
                      f"filters.bland_min_count={max(20, comments // 4000)}"]):
            subprocess.run([sys.executable, "-m", *args, *spark], cwd=REPO, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"comments": comments, "seconds": seconds}


def one_command(folder: Path, comments: int, cores: int) -> dict:
    """The same two stages as one command on one Spark session: the pipeline with stop_after=extract."""
    out = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "reddit_pretrain_app.pipeline", f"input=[{folder}/RC_2015-01.zst,{folder}/RS_2015-01.zst]",
                        f"out={out}", "stop_after=extract", f"extract.filters.bland_min_count={max(20, comments // 4000)}",
                        f"spark.master='local[{cores}]'"], cwd=REPO, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"comments": comments, "seconds": seconds}


def event_log_summary(folder: Path) -> list[dict]:
    """Jobs of Spark's event log: description, stages, tasks, task seconds."""
    import zstandard

    jobs, stage_job, rows = {}, {}, {}
    for path in sorted(folder.rglob("events_*")):  # Spark 4: a folder of rolling, zstd-compressed files
        data = path.read_bytes()
        if path.suffix == ".zstd":
            data = zstandard.ZstdDecompressor().stream_reader(data).read()
        for line in data.decode().splitlines():
            event = json.loads(line)
            kind = event["Event"]
            if kind == "SparkListenerJobStart":
                props = event.get("Properties") or {}
                jobs[event["Job ID"]] = props.get("spark.job.description") or props.get("callSite.short", "?")
                for stage in event["Stage IDs"]:
                    stage_job[stage] = event["Job ID"]
            elif kind == "SparkListenerTaskEnd":
                job = stage_job.get(event["Stage ID"])
                entry = rows.setdefault(job, {"job": jobs.get(job, "?"), "tasks": 0, "task_s": 0.0, "stages": set()})
                entry["tasks"] += 1
                entry["stages"].add(event["Stage ID"])
                entry["task_s"] += (event.get("Task Metrics") or {}).get("Executor Run Time", 0) / 1000
    return [{**r, "stages": len(r["stages"])} for _, r in sorted(rows.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--comments", type=int, default=1_000_000)
    parser.add_argument("--scale", type=int, default=4, help="the scaling run has this many times --comments (0: none)")
    parser.add_argument("--small", type=int, default=4_000, help="comments of the small month (0: none)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--event-log", type=Path, default=None)
    args = parser.parse_args()
    from extraction.spark import SparkConfig, build_spark

    # Every input is generated first, in a child process, so the generator's memory is not in
    # this process's peak.
    from concurrent.futures import ProcessPoolExecutor

    sizes = [args.comments] + ([args.scale * args.comments] if args.scale > 1 else [])
    with ProcessPoolExecutor(1) as pool:
        months = dict(zip(sizes, pool.map(month, sizes)))
        warm_month = pool.submit(synthetic_month, 20_000, 9).result()
        small_month = pool.submit(synthetic_month, args.small, 4).result() if args.small else None
    main_month = months[args.comments]
    the_floor = floor(main_month / "RC_2015-01.zst", 3)
    conf = {"spark.ui.showConsoleProgress": "false"}
    if args.event_log:
        args.event_log.mkdir(parents=True, exist_ok=True)
        conf.update({"spark.eventLog.enabled": "true", "spark.eventLog.dir": f"file://{args.event_log.resolve()}"})
    spark = build_spark(SparkConfig(master=f"local[{args.cores}]", log_level="ERROR", conf=conf))
    run(spark, warm_month, 20_000, args.cores)  # warm the JVM and the Python workers
    rows = [{"run": "main", **run(spark, main_month, args.comments, args.cores)}]
    if args.scale > 1:
        n = args.scale * args.comments
        rows.append({"run": f"{args.scale}x", **run(spark, months[n], n, args.cores)})
    spark.stop()
    base = rows[0]["seconds"] / rows[0]["comments"]
    for r in rows:
        r["vs_floor"] = r["comments_per_s_per_core"] / the_floor["lines_per_s_per_core"]
        r["seconds_per_comment_vs_main"] = (r["seconds"] / r["comments"]) / base
    wall = [{"run": f"commands, {args.comments:,} comments", **commands(main_month, args.comments, args.cores)}]
    wall.append({"run": f"one command (pipeline stop_after=extract), {args.comments:,} comments",
                 **one_command(main_month, args.comments, args.cores)})
    if args.small:
        wall.append({"run": f"commands, {args.small:,} comments", **commands(small_month, args.small, args.cores)})
        wall.append({"run": f"one command, {args.small:,} comments", **one_command(small_month, args.small, args.cores)})
    for w in wall:
        w["comments_per_s_per_core"] = w["comments"] / w["seconds"] / args.cores

    print(f"floor (zstd + orjson.loads, one process, {the_floor['lines']:,} lines of RC_2015-01.zst): "
          f"{the_floor['lines_per_s_per_core']:,.0f} lines/s")
    print(table(rows, ["run", "comments", "tasks", "ingest_s", "extract_s", "seconds", "comments_per_s_per_core", "vs_floor",
                       "peak_memory_gib", "seconds_per_comment_vs_main", "sessions_kept"]))
    print("\npeak resident memory of each part (GiB; the parts peak at different moments), and the zstd window\n"
          "the largest dump needs (any reader of it, the floor's too, holds that much decompressed history):")
    print(table(rows, ["run", "peak_driver_gib", "peak_jvm_gib", "peak_workers_gib", "peak_memory_gib", "zstd_window_gib"]))
    stages = sorted({k for r in rows for k in r["stage_seconds"]}, key=list(rows[0]["stage_seconds"]).index)
    print("\ntask seconds per stage (summed over tasks) and wall seconds per Spark job:")
    print(table([{"run": r["run"], **r["stage_seconds"], **{f"job {k}": v for k, v in r["job_seconds"].items()}} for r in rows],
                ["run", *stages, *[f"job {k}" for k in rows[0]["job_seconds"]]]))
    print("\nwhole commands (python -m extraction.ingest.job, then extraction.sessions.job; or the pipeline stopping after\n"
          "extract, one Spark session; Spark start-up included):")
    print(table(wall, ["run", "comments", "seconds", "comments_per_s_per_core"]))
    result = {"cores": args.cores, "floor": the_floor, "rows": rows, "commands": wall}
    if args.event_log:
        summary = event_log_summary(args.event_log)
        print("\nSpark event log (all runs of this benchmark's session):")
        print(table(summary, ["job", "stages", "tasks", "task_s"]))
        result["event_log"] = summary
    print(f"results: {write_results('extract', result)}")


if __name__ == "__main__":
    main()
