"""How jobs get their Spark settings from the command line (no Spark started)."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from extraction import CONF_DIR
from extraction.cli import register_schemas
from extraction.extract import ExtractConfig
from extraction.ingest import IngestConfig
from extraction.spark import spark_settings


@pytest.mark.parametrize("name, schema", [("ingest", IngestConfig), ("extract", ExtractConfig)])
@pytest.mark.parametrize("override", ["+spark.conf.spark.driver.memory=3g", "+spark.conf={spark.driver.memory: 3g}"])
def test_spark_settings_from_the_command_line(name, schema, override):
    register_schemas(name, schema)
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = OmegaConf.to_object(compose(name, overrides=[override, "+spark.conf.spark.sql.ansi.enabled=true"]))
    assert spark_settings(cfg.spark.conf) == {"spark.driver.memory": "3g", "spark.sql.ansi.enabled": "true"}
