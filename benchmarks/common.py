"""Helpers shared by the benchmark scripts: cached inputs, machine description, result files."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB RAM, Python {platform.python_version()}"


def synthetic_month(comments: int, seed: int = 0, month: str = "2015-01", **kw) -> Path:
    """A generated dump of ``comments`` comments, cached between runs."""
    from reddit_pretrain_app.synth import GENERATOR_VERSION, SynthConfig, write_month

    folder = CACHE / f"synth-v{GENERATOR_VERSION}-{comments}-{seed}-{month}"
    if not (folder / f"RC_{month}.zst").exists():
        write_month(str(folder), SynthConfig(month=month, comments=comments, seed=seed, **kw), progress=True)
    return folder


def extract_off_on_off(comments: int, work: Path, switch, repeats: int = 1) -> dict:
    """Extract of the cost month (``synthetic_month``, ingested once) in one SparkSession
    (``local[2]``): off, on, off again (``repeats`` times on and off, then off), where
    ``switch(cfg, on)`` sets what is compared on an ``ExtractConfig``. Seconds, task seconds by
    stage, kept sessions, and each run against the fastest off run; the ratio is the fastest on
    run against the fastest off run (the first run of a session is slower: the month's files come
    into the page cache, Python workers start)."""
    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.ingest.job import IngestConfig, run_ingest
    from extraction.spark import SparkConfig, build_spark

    month = synthetic_month(comments, seed=0, megathreads=1, megathread_comments=min(100_000, comments // 10), deep_chains=1,
                            deep_chain_depth=3000)
    spark_cfg = SparkConfig(master="local[2]", in_process_below_bytes=0)
    spark = build_spark(spark_cfg)
    run_ingest(IngestConfig(inputs=[str(month / "*.zst")], output=str(work / "ingest_cost"), spark=spark_cfg), spark)
    rows = []
    plan = [("off", False), ("on", True)] * repeats + [("off again", False)]
    for i, (name, on) in enumerate(plan):
        cfg = ExtractConfig(input=str(work / "ingest_cost"), output=str(work / f"cost_{i}_{name.replace(' ', '_')}"), force=True,
                            spark=spark_cfg)
        cfg.filters.bland_min_count = comments // 4000
        switch(cfg, on)
        started = time.time()
        report = run_extract(cfg, spark)
        rows.append({"run": name, "on": on, "seconds": round(time.time() - started, 2),
                     "task seconds": round(sum(report["stage_seconds"].values()), 2), "stages": report["stage_seconds"],
                     "kept": report["sessions"]["kept"]})
    off = min(r["seconds"] for r in rows if not r["on"])
    for r in rows:
        r["vs off"] = round(r["seconds"] / off, 3)
    return {"comments": comments, "runs": rows, "ratio_on_vs_off": min(r["vs off"] for r in rows if r["on"])}


def free_port() -> int:
    """A free TCP port on loopback, for torchrun's --master_port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
               "git": _git_rev(), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def _git_rev() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(rows: list[dict], columns: list[str]) -> str:
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "" if v is None else str(v)


def floor(path: Path, repeats: int) -> dict:
    """Plain zstd decompression of the file plus orjson.loads of every line, one process (median)."""
    runs = [_floor_once(path) for _ in range(repeats)]
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def _floor_once(path: Path) -> dict:
    import orjson
    import zstandard

    started = time.perf_counter()
    lines = nbytes = 0
    pending = b""
    with open(path, "rb") as f:
        reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f)
        while chunk := reader.read(8 << 20):
            nbytes += len(chunk)
            parts = (pending + chunk).split(b"\n")
            pending = parts.pop()
            for line in parts:
                try:
                    orjson.loads(line)
                except orjson.JSONDecodeError:
                    pass
                lines += 1
    seconds = time.perf_counter() - started
    return {"run": "floor: zstd + orjson, 1 process", "cores": 1, "seconds": seconds, "lines": lines,
            "lines_per_s_per_core": lines / seconds, "mb_per_s_per_core": nbytes / 1e6 / seconds}
