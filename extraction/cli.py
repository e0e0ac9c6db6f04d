"""The one way every job becomes a Hydra command line (``python -m <module> key=value ...``)."""

from __future__ import annotations

import sys
from typing import Callable


def run_hydra(config_name: str, register: Callable[[], None], run: Callable[[object], object],
              errors: tuple[type[BaseException], ...] = ()) -> None:
    """Registers the typed configs, composes ``conf/<config_name>.yaml`` with the command line's
    overrides, and calls ``run`` with the typed config object. The ``errors`` listed are
    user-facing: printed as one line, exit status 2, no stack trace."""
    import hydra
    from omegaconf import OmegaConf

    from extraction import CONF_DIR

    register()

    @hydra.main(version_base=None, config_path=CONF_DIR, config_name=config_name)
    def _main(cfg) -> None:
        try:
            run(OmegaConf.to_object(cfg))
        except errors as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    _main()
