"""DialoGPT's released extractor beside ours, on the same generated month, in the same run.

    python benchmarks/bench_dialogpt.py --dialogpt PATH [--comments 1000000] [--cores 2]

``PATH`` is a checkout of github.com/microsoft/DialoGPT (its ``reddit_extractor/src/reddit.py`` is
run as it is, never copied here; it needs ``nltk`` and ``flashtext``: ``pip install
"reddit-pretrain[bench]"``). On the benchmark month (``bench_extract.month``: one megathread of up
to 100k comments, one r/counting chain of up to 3,000):

* **DialoGPT**, one core, as its Makefile runs a month (``--task=extract``, ``gzip`` of the split
  files, ``--task=conv`` with ``--clean True --min_score 1 --min_depth 2 --max_depth 5 --use_title 0
  --leaves_only 1``, ``gzip`` of the output; each step's output to a log file, as the Makefile
  sends it). Without ``--keep_keys``: the released key lists name only 2005-2017's instances, and
  this month is none of them. Its input is the month less its few lines that are not UTF-8
  (its reader stops at the first one with a UnicodeDecodeError; ours counts and sets them aside),
  with the submissions' ``domain`` and ``permalink`` that real dumps carry (``for_dialogpt``).
  Seconds of each step, instances written, peak memory;
* **ours**, ``local[--cores]``, with today's default rules and with the rules of the data-quality
  round (language, PII masking and pseudonyms, near duplicates) switched off as well:
  the Spark time (ingest + extract from a started SparkSession to the committed outputs, the
  SparkSession warmed on a small month first) and the whole command a user types
  (``reddit-pretrain pipeline 'input=[...]' out=... stop_after=extract``, Spark's start included).

Comments per second per core (DialoGPT's on its one core) and ours against it. Prints a table and
writes benchmarks/results/dialogpt.json.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_extract import PeakMemory, month, run  # noqa: E402
from benchmarks.common import machine, synthetic_month, table, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MAKEFILE_CONV = ["--clean", "True", "--min_score", "1", "--min_depth", "2", "--max_depth", "5", "--use_title", "0",
                 "--leaves_only", "1"]
"""The settings of DialoGPT's Makefile for a training month (configs/Makefile.common)."""
ROUND_RULES_OFF = {"filters.language": False, "filters.near_duplicate": False, "privacy.scrub_pii": False,
                   "privacy.pseudonymize_authors": False}
"""The data-quality round's rules and transforms, off for the comparison the issue allows."""


def timed(cmd: list[str], log: Path | None = None, cwd: Path | None = None) -> tuple[float, int]:
    """Runs ``cmd`` (stdout and stderr to ``log``): (seconds, peak resident bytes of it and its children)."""
    import psutil

    started = time.perf_counter()
    with open(log or "/dev/null", "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        with PeakMemory(psutil.Process(proc.pid)) as memory:
            code = proc.wait()
    if code:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed (exit {code}): see {log}")
    return time.perf_counter() - started, memory.peak


def for_dialogpt(source: Path, target: Path) -> int:
    """A copy of the dump as DialoGPT's extractor can read it (not timed): without the lines that are
    not UTF-8 (the generator plants a few, as real dumps have; its reader decodes the whole stream
    and stops at the first), and with each submission's ``domain`` and ``permalink``, which real
    submissions of these years carry and the generator leaves out (its submission reader skips a
    record without them: no thread would be read). Written with a 2 GiB window, as the dumps are.
    Returns the lines left out."""
    import orjson
    import zstandard

    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31)
    dropped, pending = 0, b""
    with open(source, "rb") as f, open(target, "wb") as out:
        reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f)
        writer = zstandard.ZstdCompressor(compression_params=params).stream_writer(out)
        while chunk := reader.read(8 << 20):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            kept = []
            for line in lines:
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    dropped += 1
                    continue
                if source.name.startswith("RS_") and b'"permalink"' not in line:
                    try:
                        record = orjson.loads(line)
                        record.setdefault("domain", f"self.{record.get('subreddit')}")
                        record["permalink"] = f"/r/{record.get('subreddit')}/comments/{record.get('id')}/x/"
                        line = orjson.dumps(record)
                    except orjson.JSONDecodeError:
                        pass
                kept.append(line)
            writer.write(b"".join(x + b"\n" for x in kept))
        if pending:
            writer.write(pending)
        writer.flush(zstandard.FLUSH_FRAME)
    return dropped


def dialogpt(script: Path, folder: Path, work: Path, ym: str) -> dict:
    """DialoGPT's extractor on the month, step by step as its Makefile runs it."""
    inputs = work / "in"
    inputs.mkdir(parents=True)
    left_out = sum(for_dialogpt(folder / f"{kind}_{ym}.zst", inputs / f"{kind}_{ym}.zst") for kind in ("RC", "RS"))
    out = work / "out"
    split = out / "extract" / ym
    steps, peak = {}, 0
    seconds, mem = timed([sys.executable, str(script), ym, "--task=extract", "--reddit_input", str(inputs),
                          "--reddit_output", str(out)], work / "extract.log")
    steps["extract"], peak = seconds, max(peak, mem)
    started = time.perf_counter()
    subprocess.run(["gzip", "-f", *map(str, sorted(split.glob("r[cs]*.tsv")))], check=True)
    steps["gzip splits"] = time.perf_counter() - started
    seconds, mem = timed([sys.executable, str(script), ym, "--task=conv", "--parallel=True", "--reddit_input", str(inputs),
                          "--reddit_output", str(out), *MAKEFILE_CONV], work / "conv.log")
    steps["conv"], peak = seconds, max(peak, mem)
    started = time.perf_counter()
    subprocess.run(["gzip", "-f", str(out / "conv" / f"{ym}.tsv")], check=True)
    steps["gzip output"] = time.perf_counter() - started
    with gzip.open(out / "conv" / f"{ym}.tsv.gz", "rt", encoding="utf-8") as f:
        instances = sum(1 for line in f if line.strip())
    return {"steps": {k: round(v, 2) for k, v in steps.items()}, "seconds": sum(steps.values()), "instances": instances,
            "peak_memory_gib": peak / 2**30, "lines_not_utf8_left_out": left_out}


def whole_command(folder: Path, work: Path, comments: int, cores: int, overrides: dict, ym: str) -> dict:
    """``reddit-pretrain pipeline ... stop_after=extract`` as a user types it (a fresh process, its Spark started)."""
    settings = [f"extract.{k}={str(v).lower()}" for k, v in overrides.items()]
    cmd = [str(Path(sys.executable).parent / "reddit-pretrain"), "pipeline",
           f"input=[{folder}/RC_{ym}.zst,{folder}/RS_{ym}.zst]", f"out={work}", "stop_after=extract",
           f"extract.filters.bland_min_count={max(20, comments // 4000)}", f"spark.master='local[{cores}]'",
           *settings]
    seconds, peak = timed(cmd, work.parent / f"{work.name}.log", cwd=REPO)
    return {"seconds": seconds, "peak_memory_gib": peak / 2**30}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialogpt", type=Path, required=True, help="a checkout of microsoft/DialoGPT")
    parser.add_argument("--comments", type=int, default=1_000_000)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    script = args.dialogpt / "reddit_extractor" / "src" / "reddit.py"
    if not script.is_file():
        parser.error(f"{script} does not exist: --dialogpt takes a checkout of github.com/microsoft/DialoGPT")
    try:
        import flashtext  # noqa: F401
        import nltk  # noqa: F401
    except ImportError as e:
        parser.error(f"DialoGPT's extractor needs {e.name}: pip install 'reddit-pretrain[bench]'")
    from extraction.spark import SparkConfig, build_spark

    ym = "2015-01"
    folder = month(args.comments)
    warm = synthetic_month(20_000, 9)
    work = Path(tempfile.mkdtemp(prefix="bench-dialogpt-"))
    rows = []
    try:
        theirs = dialogpt(script, folder, work / "dialogpt", ym)
        rows.append({"run": "DialoGPT's released extractor (its Makefile's steps)", "cores": 1, "seconds": theirs["seconds"],
                     "output": f"{theirs['instances']:,} instances", "peak_memory_gib": theirs["peak_memory_gib"]})
        spark = build_spark(SparkConfig(master=f"local[{args.cores}]", log_level="ERROR"))
        run(spark, warm, 20_000, args.cores)  # the JVM and the Python workers warm, as in bench_extract
        for name, overrides in (("default rules", {}), ("default rules, the round's off", ROUND_RULES_OFF)):
            spark_run = run(spark, folder, args.comments, args.cores, overrides)
            rows.append({"run": f"ours, {name}: Spark time (ingest + extract)", "cores": args.cores,
                         "seconds": spark_run["seconds"], "output": f"{spark_run['sessions_kept']:,} sessions",
                         "peak_memory_gib": spark_run["peak_memory_gib"], "comments": spark_run["comments"]})
        spark.stop()
        for name, overrides in (("default rules", {}), ("default rules, the round's off", ROUND_RULES_OFF)):
            whole = whole_command(folder, work / f"ours-{len(rows)}", args.comments, args.cores, overrides, ym)
            rows.append({"run": f"ours, {name}: the whole command", "cores": args.cores, "seconds": whole["seconds"],
                         "output": "", "peak_memory_gib": whole["peak_memory_gib"]})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    comments = next(r["comments"] for r in rows if "comments" in r)
    base = comments / rows[0]["seconds"]
    for r in rows:
        r["comments"] = comments
        r["comments/s per core"] = comments / r["seconds"] / r["cores"]
        r["vs DialoGPT per core"] = r["comments/s per core"] / base
    print(f"machine: {machine()}")
    print(f"DialoGPT's steps (seconds): {theirs['steps']}; lines of the month that are not UTF-8, left out of its "
          f"copy: {theirs['lines_not_utf8_left_out']:,}")
    print(table(rows, ["run", "cores", "seconds", "comments/s per core", "vs DialoGPT per core", "output", "peak_memory_gib"]))
    print(f"results: {write_results('dialogpt', {'machine': machine(), 'dialogpt': theirs, 'rows': rows})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
