"""The one way every job becomes a Hydra command line (``python -m <module> key=value ...``)."""

from __future__ import annotations

import sys
from typing import Callable


def register_schemas(config_name: str, schema: type, groups: dict[str, type] | None = None) -> None:
    """Stores the typed schema of ``conf/<config_name>.yaml`` as ``<config_name>_schema`` and that of
    each config group as ``<group>_schema`` (the names the YAML defaults lists use)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name=f"{config_name}_schema", node=schema)
    for group, node in (groups or {}).items():
        store.store(group=group, name=f"{group}_schema", node=node)


def run_hydra(config_name: str, schema: type, run: Callable[[object], object],
              errors: tuple[type[BaseException], ...] = (), groups: dict[str, type] | None = None) -> None:
    """Registers the typed configs (``register_schemas``), composes ``conf/<config_name>.yaml`` with
    the command line's overrides, and calls ``run`` with the typed config object. The ``errors``
    listed are user-facing: printed as one line, exit status 2, no stack trace."""
    import hydra
    from omegaconf import OmegaConf

    from extraction import CONF_DIR

    register_schemas(config_name, schema, groups)

    @hydra.main(version_base=None, config_path=CONF_DIR, config_name=config_name)
    def _main(cfg) -> None:
        try:
            run(OmegaConf.to_object(cfg))
        except errors as err:
            from extraction import spark

            print(f"error: {err}", file=sys.stderr)
            if spark.LOG_FILE:
                print(f"(Spark's log: {spark.LOG_FILE})", file=sys.stderr)
            sys.exit(2)

    _main()
