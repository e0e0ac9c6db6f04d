"""How jobs get their Spark settings from the command line (no Spark started)."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from reddit_pretrain import CONF_DIR
from reddit_pretrain.hydra_job import register_schemas
from extraction.sessions.job import ExtractConfig
from extraction.ingest.job import IngestConfig
from extraction.spark import spark_settings


@pytest.mark.parametrize("name, schema", [("ingest", IngestConfig), ("extract", ExtractConfig)])
@pytest.mark.parametrize("override", ["+spark.conf.spark.driver.memory=3g", "+spark.conf={spark.driver.memory: 3g}"])
def test_spark_settings_from_the_command_line(name, schema, override):
    register_schemas(name, schema)
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = OmegaConf.to_object(compose(name, overrides=[override, "+spark.conf.spark.sql.ansi.enabled=true"]))
    assert spark_settings(cfg.spark.conf) == {"spark.driver.memory": "3g", "spark.sql.ansi.enabled": "true"}


def test_an_unwritable_output_is_one_line_before_spark_starts(tmp_path):
    """An output under a regular file, or on a read-only place: exit 2 with one line, in about a
    second (no SparkSession is started for it)."""
    import os
    import subprocess
    import sys
    import time

    REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o555)
    (tmp_path / "ingest" / "comments").mkdir(parents=True)
    (tmp_path / "extract" / "sessions").mkdir(parents=True)
    cases = [("extraction.ingest.job", f"inputs=[{tmp_path}/RC_2015-01.zst]", f"output={blocker}/out", "is a file"),
             ("extraction.sessions.job", f"input={tmp_path}/ingest", f"output={blocker}/out", "is a file"),
             ("extraction.tokenize.job", f"input={tmp_path}/extract", f"output={blocker}", "is a file, not a folder")]
    if os.geteuid() != 0:  # root writes anywhere: the read-only case needs an ordinary user
        cases.append(("extraction.sessions.job", f"input={tmp_path}/ingest", f"output={readonly}/out", "read-only"))
    for module, first, output, message in cases:
        started = time.time()
        result = subprocess.run([sys.executable, "-m", module, first, output], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[-1]]
        assert message in result.stderr and "Traceback" not in result.stderr
        assert time.time() - started < 60


@pytest.mark.slow
def test_a_local_spark_keeps_the_console_to_the_jobs_lines(tmp_path):
    """The JVM's own start-up lines go to the log file, with Spark's log; a JVM that cannot start
    is one line naming that file (exit 2), not a py4j traceback."""
    import subprocess
    import sys

    from reddit_pretrain_app.synth import SynthConfig, write_month

    write_month(str(tmp_path / "dumps"), SynthConfig(comments=300, seed=3))
    base = [sys.executable, "-m", "extraction.ingest.job", f"inputs=[{tmp_path}/dumps/RC_2015-01.zst]",
            "spark.in_process_below_bytes=0", "spark.master='local[1]'"]
    ok = subprocess.run([*base, f"output={tmp_path}/ok"], capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-3000:]
    console = ok.stdout + ok.stderr
    assert "on Spark local[1]" in console
    for chatter in ("incubator modules", "Setting default log level", "sc.setLogLevel", "INFO", "WARN "):
        assert chatter not in console, console
    bad = subprocess.run([*base, f"output={tmp_path}/bad", "+spark.conf.spark.driver.memory=nonsense"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-3000:]
    line = [x for x in bad.stderr.splitlines() if x.startswith("error: Spark did not start")]
    assert line and "reddit-pretrain-logs" in line[0]
    log = line[0].rsplit(" ", 1)[-1].strip("()")
    assert "nonsense" in open(log).read()


def test_old_spark_logs_are_removed(tmp_path):
    import os

    from extraction.spark import prune_logs

    for i in range(25):
        for suffix in (".log", ".log4j2.properties"):
            path = tmp_path / f"spark-20261128-0000{i:02d}-1{suffix}"
            path.write_text("x")
            os.utime(path, (1_000_000 + i, 1_000_000 + i))
    (tmp_path / "other.txt").write_text("not ours")
    prune_logs(str(tmp_path), keep=20)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 41 and "other.txt" in left and "spark-20261128-000004-1.log" not in left
    assert "spark-20261128-000005-1.log" in left and "spark-20261128-000024-1.log4j2.properties" in left
