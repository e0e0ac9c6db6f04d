"""The errors a user sees, and the one place they are caught.

Every error that tells a user what to change (a setting, an input, a folder, a checkpoint) is a
``UserError``: the jobs' own classes (``IngestError``, ``ExtractError``, ``ConfigError``,
``ShardError``, ...) derive from it, beside the built-in class each had before (a ``ConfigError``
is still a ``ValueError``). ``in_one_line`` turns one into ``error: <its text>`` on stderr and exit
status 2, with no stack trace; every command runs inside it (``hydra_job.run_hydra`` for the Hydra
jobs, ``reddit_pretrain_app.command`` for the tools). Anything else is a bug, and keeps its trace.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable


class UserError(Exception):
    """An error whose message says what to change; shown as one line, exit status 2."""


class SettingError(UserError, ValueError):
    """A setting that cannot work, found by a config's ``validate`` before anything runs."""


@contextlib.contextmanager
def in_one_line(hint: Callable[[], str | None] | None = None,
                explain: Callable[[BaseException], str | None] | None = None):
    """A ``UserError`` or a missing input (``FileNotFoundError``) ends the command with one line (and
    ``hint()``'s, if any) and exit status 2; so does any other error that ``explain`` gives a line
    for (``storage.remote_error``: an object store's missing credentials, bucket or permission).
    Anything else passes on."""
    try:
        yield
    except (UserError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        extra = hint() if hint else None
        if extra:
            print(extra, file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        line = explain(err) if explain else None
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
