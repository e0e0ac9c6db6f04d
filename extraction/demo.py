"""The README's demo: a generated Pushshift month run through the pipeline, on this machine.

    python -m extraction.demo [--out out/demo] [--comments 200000]

Stages run so far: synthetic dump -> ingest (Parquet) -> chains, filters and splits (sessions,
report picture). Each stage skips work that is already complete, so running it again is quick.
"""

from __future__ import annotations

import argparse
import os
import sys

from extraction.chains import SplitConfig
from extraction.extract import ExtractConfig, run_extract
from extraction.filters import FiltersConfig
from extraction.ingest import IngestConfig, run_ingest
from extraction.spark import SparkConfig
from extraction.synth import SynthConfig, write_month


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--comments", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    dumps = os.path.join(args.out, "dumps")
    synth = SynthConfig(month="2015-01", comments=args.comments, seed=args.seed,
                        megathreads=1, megathread_comments=min(20_000, args.comments // 10),
                        deep_chains=1, deep_chain_depth=min(2_000, args.comments // 50))
    if not os.path.exists(os.path.join(dumps, "RC_2015-01.zst")):
        print(f"[demo] generating a Pushshift month of {args.comments:,} comments in {dumps}", file=sys.stderr)
        write_month(dumps, synth, progress=True)
    ingest_out = os.path.join(args.out, "ingest")
    run_ingest(IngestConfig(inputs=[os.path.join(dumps, "R[CS]_2015-01.zst")], output=ingest_out,
                            spark=SparkConfig(master="local[*]")))
    extract_out = os.path.join(args.out, "extract")
    # A 200k-comment month is tiny next to DialoGPT's corpus: scale the blandness count down.
    run_extract(ExtractConfig(input=ingest_out, output=extract_out, filters=FiltersConfig(bland_min_count=50),
                              split=SplitConfig(valid_fraction=0.02, test_fraction=0.02),
                              spark=SparkConfig(master="local[*]")))
    print()
    print(f"dumps:        {dumps}")
    print(f"ingest:       {ingest_out}/{{comments,submissions,rejects}} (Parquet), report {ingest_out}/ingest_report.json")
    print(f"sessions:     {extract_out}/sessions (split=train|valid|test), rejects {extract_out}/rejects")
    print(f"report:       {extract_out}/extract_report.html (picture: {extract_out}/extract_report.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
