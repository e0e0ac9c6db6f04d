"""The cost of today's-dumps rules (``moderator``, a turn rule, and ``toxic_mark``, a session rule) on extract.

    python benchmarks/bench_todays_rules.py [--comments 1000000] [--repeats 3]

The extract benchmark month, ingested once, then extracted on Spark (``local[2]``) with both rules
off, on, off again (``--repeats`` times on and off; ``benchmarks.common.extract_off_on_off``): seconds,
task seconds by stage, sessions kept, and the fastest on run against the fastest off run. The
month is a generated 2015 one: the marks are null, as in every month before 2021 (what the rules
cost where they find nothing to cut). Writes benchmarks/results/todays_rules.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import extract_off_on_off, table, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comments", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    def switch(cfg, on: bool) -> None:
        cfg.filters.moderator = on
        cfg.filters.toxic_mark = on

    result = extract_off_on_off(args.comments, Path(tempfile.mkdtemp(prefix="bench_todays_rules_")), switch, args.repeats)
    rows = [{"run": r["run"], "seconds": r["seconds"], "task seconds": r["task seconds"], "vs off": r["vs off"],
             "turn rules": r["stages"].get("turn rules"), "session rules": r["stages"].get("session rules"),
             "kept": r["kept"]} for r in result["runs"]]
    print(table(rows, list(rows[0])))
    print(f"fastest on / fastest off: {result['ratio_on_vs_off']:.3f}")
    print(f"[bench] wrote {write_results('todays_rules', result)}")


if __name__ == "__main__":
    main()
