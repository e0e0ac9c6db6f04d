"""What checking the token shards' sha256 before training costs (``data.verify_checksums``, on by default).

    python benchmarks/bench_verify.py [--gib 2] [--shard-mib 256]

Writes ``--gib`` GiB of token shards (uint16 tokens, as the tokenize job writes them; 100 MB shards
by default there), then, in the same run: plain reading of every file (the floor: what any check
must pay), and ``reddit_pretrain.shards.verify_files`` with 1 thread and with one thread per core, as
the trainer runs it once per node. The files are in the page cache (just written), as on a node
that made or staged the shards; a cold disk adds its read time to both. Prints a table with the
time for a 10 GiB shard set and writes benchmarks/results/verify.json.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import table, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--shard-mib", type=int, default=256)
    args = parser.parse_args()
    import numpy as np

    from reddit_pretrain.shards import verify_files

    folder = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        rng = np.random.default_rng(0)
        files, total = [], 0
        while total < args.gib * 2**30:
            data = rng.integers(0, 50257, args.shard_mib * 2**19, dtype=np.uint16).tobytes()
            path = folder / f"train-{len(files):05d}.tokens"
            path.write_bytes(data)
            files.append((str(path), hashlib.sha256(data).hexdigest()))
            total += len(data)
        rows = []

        def timed(name, threads, fn):
            started = time.perf_counter()
            fn()
            seconds = time.perf_counter() - started
            rows.append({"run": name, "threads": threads, "gib": total / 2**30, "seconds": seconds,
                         "gib_per_s": total / 2**30 / seconds, "seconds_for_10_gib": 10 * 2**30 / total * seconds})

        def read_all():
            for path, _ in files:
                with open(path, "rb") as f:
                    while f.read(8 << 20):
                        pass

        timed("floor: read every file, no hashing", 1, read_all)
        for threads in (1, os.cpu_count() or 1):
            timed(f"verify_files (sha256), {threads} thread(s)", threads, lambda t=threads: verify_files(files, t))
        base = rows[0]["seconds"]
        for r in rows:
            r["vs_floor"] = r["seconds"] / base
        print(table(rows, ["run", "threads", "gib", "seconds", "gib_per_s", "vs_floor", "seconds_for_10_gib"]))
        print(f"results: {write_results('verify', {'rows': rows, 'files': len(files)})}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
