"""Driver script for spark-submit: runs one extraction job with Hydra overrides.

    spark-submit [spark options] jobs/spark_driver.py <job> [hydra overrides...]

The jobs are the registry's Spark jobs (``reddit_pretrain_app.registry``: ingest, extract, tokenize).

spark-submit decides the master (--master); the job's own spark.master is set to null so the
session spark-submit configured is used as it is.
"""

import importlib
import os
import sys

# The driver runs from the checkout, whose conf/ Hydra reads; executors import the shipped wheel.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    from reddit_pretrain_app.registry import spark_jobs

    JOBS = spark_jobs()
    if len(sys.argv) < 2 or sys.argv[1] not in JOBS:
        sys.exit(f"usage: spark-submit jobs/spark_driver.py {{{'|'.join(JOBS)}}} [overrides...]")
    module = importlib.import_module(JOBS[sys.argv.pop(1)])
    sys.argv.append("spark.master=null")
    module.main()
