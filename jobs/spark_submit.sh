#!/usr/bin/env bash
# Submits an extraction job to a Spark cluster (standalone, YARN or Kubernetes).
#
#   MASTER=spark://head:7077 jobs/spark_submit.sh ingest 'inputs=[s3://bucket/reddit/RC_2015-0*.zst]' output=s3://bucket/run/ingest
#   MASTER=yarn DEPLOY_MODE=cluster PACKED_ENV=env.tar.gz jobs/spark_submit.sh extract input=hdfs:///run/ingest output=hdfs:///run/extract
#   MASTER=k8s://https://api:6443 SPARK_CONF="--conf spark.kubernetes.container.image=myimage" jobs/spark_submit.sh tokenize ...
#
# How the code reaches the executors:
#   - this project is built into a wheel (dist/) and shipped with --py-files;
#   - its dependencies (pyarrow, msgspec, zstandard, fsspec, tokenizers, pandas<3, ...) must be on
#     the executors: either installed there already, or shipped as a packed virtual environment:
#         python -m venv env && env/bin/pip install ".[data]" && env/bin/pip install venv-pack && env/bin/venv-pack -o env.tar.gz
#     then PACKED_ENV=env.tar.gz, which adds --archives env.tar.gz#environment and points
#     PYSPARK_PYTHON at ./environment/bin/python.
# Cluster deploy mode (the driver on a worker, no checkout there): the driver reads its config from
# the installed package (reddit_pretrain/conf in the wheel), so use PACKED_ENV (the packed env has
# the package installed) or install reddit-pretrain[data] on the workers; a wheel on --py-files
# alone is a zip, which Hydra's config folder cannot be read from.
# The driver logs Spark's warnings and errors only (jobs/log4j2-driver.properties, client mode);
# SPARK_DRIVER_LOG4J=default keeps Spark's own INFO log.
# Object stores: s3:// paths work for the Python readers/writers through fsspec (pip install s3fs)
# and for Spark through s3a:// (hadoop-aws on the cluster); hdfs:// needs pyarrow's libhdfs.
set -euo pipefail
cd "$(dirname "$0")/.."
JOB="${1:?usage: jobs/spark_submit.sh ingest|extract|tokenize [hydra overrides...]}"
shift
MASTER="${MASTER:-local[*]}"
DEPLOY_MODE="${DEPLOY_MODE:-client}"
PYTHON="${PYTHON:-$(pwd)/.venv/bin/python}"
SPARK_SUBMIT="${SPARK_SUBMIT:-$(dirname "$PYTHON")/spark-submit}"

rm -rf dist/wheel && "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w dist/wheel . 2>/dev/null \
  || "$PYTHON" -m pip wheel -q --no-deps -w dist/wheel .
WHEEL="$(ls dist/wheel/reddit_pretrain-*.whl)"

ARGS=(--master "$MASTER" --deploy-mode "$DEPLOY_MODE" --name "reddit-pretrain-$JOB" --py-files "$WHEEL"
      --conf spark.sql.execution.arrow.pyspark.enabled=true --conf spark.sql.session.timeZone=UTC)
if [ "$DEPLOY_MODE" = client ] && [ "${SPARK_DRIVER_LOG4J:-quiet}" = quiet ]; then  # warnings and errors only
  ARGS+=(--driver-java-options "-Dlog4j2.configurationFile=file:$(pwd)/jobs/log4j2-driver.properties")
fi
if [ -n "${PACKED_ENV:-}" ]; then
  ARGS+=(--archives "$PACKED_ENV#environment" --conf spark.pyspark.python=./environment/bin/python
         --conf spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python)
else
  export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PYTHON}"
  export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PYTHON}"
fi
# shellcheck disable=SC2086
exec "$SPARK_SUBMIT" "${ARGS[@]}" ${SPARK_CONF:-} jobs/spark_driver.py "$JOB" "$@"
