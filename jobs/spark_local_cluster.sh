#!/usr/bin/env bash
# A real Spark standalone cluster on this machine, from the pyspark installation: a master and
# N workers on loopback. For trying the cluster path (and for the tests); on real clusters use
# your site's Spark.
#   jobs/spark_local_cluster.sh start [WORKERS=2] [CORES_PER_WORKER=1]  -> prints spark://127.0.0.1:PORT
#   jobs/spark_local_cluster.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
ACTION="${1:?start|stop}"
WORKERS="${2:-2}"
CORES="${3:-1}"
STATE="${SPARK_CLUSTER_DIR:-out/spark-cluster}"
PYTHON="${PYTHON:-$(pwd)/.venv/bin/python}"
SPARK_CLASS="$(dirname "$PYTHON")/spark-class"
PORT="${SPARK_MASTER_PORT:-7177}"
mkdir -p "$STATE"
case "$ACTION" in
  start)
    export SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON="$PYTHON"
    nohup "$SPARK_CLASS" org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$PORT" --webui-port 0 \
      > "$STATE/master.log" 2>&1 &
    echo $! > "$STATE/master.pid"
    for _ in $(seq 1 60); do grep -q "I have been elected leader" "$STATE/master.log" 2>/dev/null && break; sleep 1; done
    for i in $(seq 1 "$WORKERS"); do
      nohup "$SPARK_CLASS" org.apache.spark.deploy.worker.Worker --host 127.0.0.1 --cores "$CORES" --memory 2g \
        --webui-port 0 --work-dir "$STATE/work-$i" "spark://127.0.0.1:$PORT" > "$STATE/worker-$i.log" 2>&1 &
      echo $! > "$STATE/worker-$i.pid"
    done
    for i in $(seq 1 "$WORKERS"); do
      for _ in $(seq 1 60); do grep -q "Successfully registered with master" "$STATE/worker-$i.log" 2>/dev/null && break; sleep 1; done
    done
    echo "spark://127.0.0.1:$PORT"
    ;;
  stop)
    for pid in "$STATE"/*.pid; do [ -e "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; rm -f "$pid"; done
    ;;
  *) echo "start|stop" >&2; exit 2 ;;
esac
