"""MinHash signatures: ours (numpy, ``extraction.sessions.neardup.signatures``) against the MinHash
libraries a user would reach for, rensa and datasketch, on the same replies.

    python benchmarks/bench_minhash.py [--texts 100000] [--comments 1000000] [--repeats 3] [--pairs 2000]

(``pip install -e ".[bench]"`` first, which brings both; a library that is not installed is left out.)

The texts are the first ``--texts`` comment bodies of the generated ``--comments`` month (the cost
month of ``bench_neardup``), normalised and shingled as the rule does it (word 4-grams, 64-bit
hashes; ``neardup.shingles``). Two measures, each the fastest of ``--repeats`` runs:

* **signatures from the shingle hashes**: ``num_perm`` values per text from the same flat array of
  shingle hashes, as a numpy array (what the band keys and sketches are made from): ours, rensa's
  ``RMinHash.digest_matrix_from_flat_token_hashes`` (its bulk API for pre-hashed tokens; its digest
  matrix alone, and turned into a numpy array, for which its only way is ``to_rows``, Python lists; ``--rensa-threads 1``, the default, as a Spark task runs it beside the
  other cores' tasks; ``0`` its own default, every core), datasketch's ``MinHash.bulk`` on the hashes (``affine64``, the
  hash function the identity);
* **texts to signatures**: each library from the raw texts the way its documentation shows:
  ours (``normalize``, ``shingles``, ``signatures``), rensa's ``digest_matrix_from_token_sets`` on
  4-gram strings made in Python, datasketch's ``MinHash.bulk`` on 4-gram bytes (SHA-1, its default).

And how well each signature estimates the Jaccard of its shingle sets: ``--pairs`` texts of at least
12 words, each against a copy with one word replaced, plus as many pairs of different texts; the
mean and largest absolute error of the estimate (share of equal values) against the exact Jaccard.

Prints tables and writes benchmarks/results/minhash.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, synthetic_month, table, write_results  # noqa: E402

ABSENT = {"[deleted]", "[removed]", ""}


def bodies(comments: int, count: int) -> list[str]:
    """The first ``count`` comment bodies (not deleted or removed; malformed lines passed over) of the generated month."""
    import zstandard

    path = synthetic_month(comments) / "RC_2015-01.zst"
    out = []
    with open(path, "rb") as f:
        reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f)
        for line in io.BufferedReader(reader):
            try:  # (the generated month plants malformed lines and bytes, as real dumps have)
                record = json.loads(line.decode("utf-8"))
            except ValueError:
                continue
            body = record.get("body") if isinstance(record, dict) else None
            if isinstance(body, str) and body not in ABSENT:
                out.append(body)
                if len(out) == count:
                    break
    return out


def fastest(fn, repeats: int):
    best, value = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


def row_offsets(rows, n: int):
    """Where each of ``n`` rows' shingles start in the flat array, and where the last ends (rensa's
    ``row_offsets``), from ``shingles``' rows (ascending)."""
    import numpy as np

    offsets = np.zeros(n + 1, np.uint64)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    return offsets


def per_row(h, offsets) -> list[list[int]]:
    """The shingle hashes of each row as Python ints (what datasketch takes, a text at a time)."""
    return [h[int(a):int(b)].tolist() for a, b in zip(offsets[:-1], offsets[1:])]


def python_shingles(texts: list[str], k: int) -> list[list[str]]:
    """The rule's normalised words (``neardup.normalize``) joined into ``k``-gram strings in Python."""
    import pyarrow as pa

    from extraction.sessions.neardup import normalize

    out = []
    for text in normalize(pa.array(texts, pa.string())).to_pylist():
        words = text.split()
        out.append([" ".join(words[i:i + k]) for i in range(len(words) - k + 1)])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--comments", type=int, default=1_000_000, help="the generated month the texts come from")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=2_000)
    parser.add_argument("--rensa-threads", type=int, default=1,
                        help="rensa's threads (RAYON_NUM_THREADS); 1: as a Spark task runs it, one task a core; "
                             "0: its default, every core")
    args = parser.parse_args()
    if args.rensa_threads:
        os.environ["RAYON_NUM_THREADS"] = str(args.rensa_threads)  # (read when rensa's pool starts)
    rensa_threads = f"{args.rensa_threads} thread" if args.rensa_threads else f"all {os.cpu_count()} cores"

    import numpy as np
    import pyarrow as pa

    from extraction.sessions import neardup
    from extraction.sessions.filters import FiltersConfig

    cfg = FiltersConfig()
    k, num_perm = cfg.near_duplicate_shingle, cfg.near_duplicate_bands * cfg.near_duplicate_rows
    try:
        import rensa
    except ImportError:
        rensa = None
    try:
        from datasketch import MinHash
    except ImportError:
        MinHash = None
    print(f"machine: {machine()}")
    print(f"libraries: numpy {np.__version__}, rensa {_version('rensa')}, datasketch {_version('datasketch')}")

    texts = bodies(args.comments, args.texts)
    column = pa.array(texts, pa.string())  # (as the rule reads a bucket's replies: an Arrow column)
    n = len(texts)
    h, rows = neardup.shingles(column, k)
    offsets = row_offsets(rows, n)
    with_shingles = int((np.diff(offsets) > 0).sum())
    print(f"{n:,} texts, {with_shingles:,} with a shingle, {len(h):,} shingles; {num_perm} values per text")

    def ours_from_hashes():
        return neardup.signatures(h, rows, n, num_perm)

    def ours_from_texts():
        hh, rr = neardup.shingles(column, k)
        return neardup.signatures(hh, rr, n, num_perm)

    from_hashes = [("ours (numpy, one thread)", ours_from_hashes)]
    from_texts = [("ours (numpy, one thread)", ours_from_texts)]
    if rensa is not None:
        def rensa_flat():
            return rensa.RMinHash.digest_matrix_from_flat_token_hashes(h, offsets, num_perm, 42)

        def rensa_flat_numpy():
            return np.array(rensa_flat().to_rows(), np.uint32)

        def rensa_texts():
            matrix = rensa.RMinHash.digest_matrix_from_token_sets(python_shingles(texts, k), num_perm, 42)
            return np.array(matrix.to_rows(), np.uint32)

        from_hashes.append(("rensa RMinHash, flat hashes: its digest matrix only", rensa_flat))
        from_hashes.append(("rensa RMinHash, flat hashes, as a numpy array (to_rows)", rensa_flat_numpy))
        from_texts.append(("rensa RMinHash, token sets, as a numpy array (to_rows)", rensa_texts))
    if MinHash is not None:
        per_text = per_row(h, offsets)

        def datasketch_hashes():
            return MinHash.bulk(per_text, num_perm=num_perm, scheme="affine64", hashfunc=int)

        def datasketch_texts():
            data = [[s.encode() for s in doc] for doc in python_shingles(texts, k)]
            return MinHash.bulk(data, num_perm=num_perm)

        from_hashes.append(("datasketch MinHash.bulk (affine64, identity hash)", datasketch_hashes))
        from_texts.append(("datasketch MinHash.bulk (SHA-1)", datasketch_texts))

    result = {"rensa_threads": args.rensa_threads, "texts": n, "texts_with_shingles": with_shingles, "shingles": int(len(h)), "num_perm": num_perm,
              "libraries": {"numpy": np.__version__, "rensa": _version("rensa"), "datasketch": _version("datasketch")}}
    for title, runs in (("signatures from the shingle hashes", from_hashes), ("texts to signatures", from_texts)):
        rows_out = []
        for name, fn in runs:
            seconds, _ = fastest(fn, args.repeats)
            if name.startswith("rensa"):
                name += f" ({rensa_threads})"
            rows_out.append({"method": name, "seconds": round(seconds, 3), "per 100k texts": round(seconds * 100_000 / n, 3)})
        base = rows_out[0]["seconds"]
        for r in rows_out:
            r["vs ours"] = round(r["seconds"] / base, 2)
        print(f"\n{title}:")
        print(table(rows_out, ["method", "seconds", "per 100k texts", "vs ours"]))
        result[title.replace(" ", "_")] = rows_out

    result["accuracy"] = accuracy(texts, args.pairs, k, num_perm, rensa, MinHash)
    print("\nthe estimate of the Jaccard against the exact one:")
    print(table(result["accuracy"], ["method", "pairs", "mean abs error", "max abs error", "mean exact jaccard"]))
    path = write_results("minhash" if args.rensa_threads == 1 else f"minhash_rensa_threads{args.rensa_threads}", result)
    print(f"results: {path}")
    return 0


def accuracy(texts: list[str], count: int, k: int, num_perm: int, rensa, MinHash) -> list[dict]:
    """Each method's estimate (share of equal values) against the exact Jaccard of the shingle sets,
    on pairs of a text and its copy with one word replaced, and pairs of two different texts."""
    import numpy as np
    import pyarrow as pa

    from extraction.sessions import neardup

    rng = random.Random(7)
    long = [t for t in texts if len(t.split()) >= 12]
    chosen = rng.sample(long, min(count, len(long)))
    edited = []
    for i, t in enumerate(chosen):
        words = t.split()
        words[rng.randrange(len(words))] = f"zq{i}x"
        edited.append(" ".join(words))
    others = rng.sample(long, len(chosen))
    left, right = chosen + chosen, edited + others
    both = left + right
    h, rows = neardup.shingles(pa.array(both, pa.string()), k)
    m = len(left)
    sets = [set() for _ in both]
    for value, row in zip(h.tolist(), rows.tolist()):
        sets[row].add(value)
    exact = np.array([neardup.jaccard(sets[i], sets[m + i]) for i in range(m)])
    estimates = {}
    sig, present = neardup.signatures(h, rows, len(both), num_perm)
    full = np.zeros((len(both), num_perm), np.uint32)
    full[present] = sig
    estimates["ours (16-bit values)"] = (full[:m] == full[m:]).mean(axis=1)
    offsets = row_offsets(rows, len(both))
    if rensa is not None:
        d = np.array(rensa.RMinHash.digest_matrix_from_flat_token_hashes(h, offsets, num_perm, 42).to_rows(), np.uint32)
        estimates["rensa RMinHash"] = (d[:m] == d[m:]).mean(axis=1)
    if MinHash is not None:
        mh = MinHash.bulk(per_row(h, offsets), num_perm=num_perm, scheme="affine64", hashfunc=int)
        estimates["datasketch MinHash"] = np.array([mh[i].jaccard(mh[m + i]) for i in range(m)])
    out = []
    for name, est in estimates.items():
        err = np.abs(est - exact)
        out.append({"method": name, "pairs": m, "mean abs error": round(float(err.mean()), 4),
                    "max abs error": round(float(err.max()), 4), "mean exact jaccard": round(float(exact.mean()), 4)})
    return out


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
