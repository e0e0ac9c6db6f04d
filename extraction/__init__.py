"""Spark extraction of dialogue sessions from Pushshift Reddit dumps.

Kept free of heavy imports: Spark executors import this package and must not pull in torch.
"""

import os as _os

CONF_DIR = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "conf")
"""The project's Hydra config folder (absolute, so entry points work however they are imported)."""
