"""A stage killed at about half its tasks, then run again: the re-run redoes only what died.

    python benchmarks/bench_resume.py [--comments 1000000] [--repeats 3] [--cores 2]

Four cases, each a whole command run as its own process on Spark (``local[--cores]``,
``spark.in_process_below_bytes=0``: every task set a Spark job), timed from start to exit:

- ingest of eight dumps (four generated months, comments and submissions, a task each);
- extract of the generated benchmark month, killed in its first task set (chains and session
  rules), and again killed in its corpus-rules task set;
- tokenize of that extract with a tokenizer trained on it.

Per case and round, alternated (the order reversed every other round): an uninterrupted run into a
fresh folder (the baseline), then a run into another fresh folder killed with SIGKILL of its whole
process group once half the case's task set has recorded its completion (``extraction.spark.stage``),
then the re-run of that command, timed alone. The re-run's outputs are compared with the
baseline's (the rows of every table in order; the shard files byte for byte). Prints the re-run
against the baseline (median and spread of the rounds) and writes benchmarks/results/resume-<comments>.json.

Extract is cut finer than its defaults (its input ingested into 64 pieces, ``task_bytes`` 4 MiB,
``reduce_bytes`` 16 MiB) and tokenize into ``--sessions-per-task`` runs, so that "half the tasks" means something on one month; a
corpus has thousands of tasks at the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import synthetic_month, table, write_results  # noqa: E402


def _records(out: Path, step: str) -> int:
    return sum(len(list(p.glob(f"_tasks/{step}/*.json"))) for p in out.glob("_staging-*"))


def _run(args: list[str], log: Path) -> float:
    started = time.time()
    with open(log, "w") as sink:
        done = subprocess.run(args, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed: {log.read_text()[-3000:]}")
    return time.time() - started


def _killed(args: list[str], out: Path, step: str, at: int, log: Path) -> int:
    """Runs ``args`` in its own process group, kills the group once ``at`` tasks of ``step`` are recorded."""
    with open(log, "w") as sink:
        proc = subprocess.Popen(args, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    while _records(out, step) < at:
        if proc.poll() is not None:
            raise SystemExit(f"{' '.join(args)} ended before it was killed: {log.read_text()[-3000:]}")
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return _records(out, step)


def _rows(folder: Path, sort: str):
    import pyarrow.dataset as ds

    return ds.dataset(str(folder), format="parquet", partitioning="hive").to_table().sort_by(sort)


def _same(case: str, a: Path, b: Path) -> bool:
    if case == "ingest":
        return all(_rows(a / t, k).equals(_rows(b / t, k)) for t, k in
                   (("comments", "id"), ("submissions", "id"), ("rejects", "line_number")))
    if case.startswith("extract"):
        return all(_rows(a / t, "session_id").equals(_rows(b / t, "session_id")) for t in ("sessions", "rejects"))
    names = sorted(p.name for p in (a / "shards").iterdir())
    return names == sorted(p.name for p in (b / "shards").iterdir()) and \
        all((a / "shards" / n).read_bytes() == (b / "shards" / n).read_bytes() for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comments", type=int, default=1_000_000, help="comments of the extract's month (ingest: four months of a quarter each)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--sessions-per-task", type=int, default=25_000)
    ap.add_argument("--cases", default="ingest,extract: first task set,extract: corpus rules,tokenize")
    ap.add_argument("--work", default=None)
    args = ap.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_resume_"))
    spark = [f"spark.master=\"local[{args.cores}]\"", "spark.in_process_below_bytes=0"]
    command = [sys.executable, "-m", "reddit_pretrain_app.command"]
    chosen = [c.strip() for c in args.cases.split(",")]
    dumps = work / "dumps"
    dumps.mkdir(parents=True, exist_ok=True)
    for n, month in enumerate(("2015-01", "2015-02", "2015-03", "2015-04") if "ingest" in chosen else ()):
        for f in synthetic_month(args.comments // 4, seed=10 + n, month=month).glob("*.zst"):
            if not (dumps / f.name).exists():
                os.symlink(f, dumps / f.name)
    month = synthetic_month(args.comments, seed=0, megathreads=1, megathread_comments=min(100_000, args.comments // 10),
                            deep_chains=1, deep_chain_depth=3000)
    ingest = work / "ingest"
    if not (ingest / "_INGEST_DONE.json").exists():
        _run(command + ["ingest", f"inputs=[{month}/*.zst]", f"output={ingest}", "thread_buckets=64", *spark], work / "ingest.log")
    extract_settings = [f"input={ingest}", f"task_bytes={4 << 20}", f"reduce_bytes={16 << 20}", *spark]
    extract = work / "extract"
    if not (extract / "_EXTRACT_DONE.json").exists():
        _run(command + ["extract", *extract_settings, f"output={extract}"], work / "extract.log")
    tokenizer = work / "tokenizer"
    if not tokenizer.exists():
        from extraction.tokenize.train_tokenizer import train_tokenizer

        train_tokenizer(str(extract / "sessions"), str(tokenizer), vocab_size=4000)

    cases = {
        "ingest": (["ingest", f"inputs=[{dumps}/*.zst]", *spark], "dumps"),
        "extract: first task set": (["extract", *extract_settings], "sessions"),
        "extract: corpus rules": (["extract", *extract_settings], "corpus-rules"),
        "tokenize": (["tokenize", f"input={extract}", f"tokenizer={tokenizer}", f"sessions_per_task={args.sessions_per_task}",
                      *spark], "tokenize"),
    }
    tasks: dict[str, int] = {}
    runs: dict[str, list[dict]] = {c: [] for c in chosen}
    for round_ in range(args.repeats):
        for case in (chosen if round_ % 2 == 0 else chosen[::-1]):
            argv, step = cases[case]
            slug = case.replace(": ", "-").replace(" ", "-")
            base, killed = work / f"{slug}-base", work / f"{slug}-killed"
            for folder in (base, killed):
                shutil.rmtree(folder, ignore_errors=True)
            full = _run(command + argv + [f"output={base}"], work / f"{slug}-base.log")
            report = base / ("manifest.json" if case == "tokenize" else
                             "ingest_report.json" if case == "ingest" else "extract_report.json")
            data = json.loads(report.read_text())
            sets = data["tasks"]
            tasks[case] = sets[step.replace("-", " ")]["tasks"]
            at = max(1, tasks[case] // 2)
            done_at_kill = _killed(command + argv + [f"output={killed}"], killed, step, at, work / f"{slug}-killed.log")
            again = _run(command + argv + [f"output={killed}"], work / f"{slug}-rerun.log")
            same = _same(case, base, killed)
            runs[case].append({"full_s": round(full, 2), "rerun_s": round(again, 2), "ratio": round(again / full, 3),
                               "finished_at_kill": done_at_kill, "same": same,
                               "sets": {"full": sets, "rerun": json.loads((killed / report.name).read_text())["tasks"]}})
            print(f"[bench] round {round_ + 1} {case}: full {full:.1f} s, killed after {done_at_kill} of {tasks[case]} tasks "
                  f"of {step}, re-run {again:.1f} s ({again / full:.2f}x), same outputs: {same}", flush=True)

    rows = []
    for case in chosen:
        ratios = [r["ratio"] for r in runs[case]]
        rows.append({"case": case, "tasks in the set": tasks[case],
                     "finished at kill": "/".join(str(r["finished_at_kill"]) for r in runs[case]),
                     "full s, median": round(statistics.median(r["full_s"] for r in runs[case]), 1),
                     "re-run s, median": round(statistics.median(r["rerun_s"] for r in runs[case]), 1),
                     "re-run vs full": round(statistics.median(ratios), 2),
                     "spread": f"{min(ratios):.2f}-{max(ratios):.2f}",
                     "same outputs": all(r["same"] for r in runs[case])})
    print(table(rows, list(rows[0])))
    path = write_results(f"resume-{args.comments}", {"args": vars(args), "runs": runs, "table": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
