"""Driver script for spark-submit: runs one extraction job with Hydra overrides.

    spark-submit [spark options] jobs/spark_driver.py ingest|extract|tokenize [hydra overrides...]

spark-submit decides the master (--master); the job's own spark.master is set to null so the
session spark-submit configured is used as it is.
"""

import importlib
import os
import sys

# The driver runs from the checkout, whose conf/ Hydra reads; executors import the shipped wheel.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

JOBS = {"ingest": "extraction.ingest.job", "extract": "extraction.sessions.job", "tokenize": "extraction.tokenize.job"}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in JOBS:
        sys.exit(f"usage: spark-submit jobs/spark_driver.py {{{'|'.join(JOBS)}}} [overrides...]")
    module = importlib.import_module(JOBS[sys.argv.pop(1)])
    sys.argv.append("spark.master=null")
    module.main()
