"""The errors a user sees, and the one place they are caught.

Every error that tells a user what to change (a setting, an input, a folder, a checkpoint) is a
``UserError``: the jobs' own classes (``IngestError``, ``ExtractError``, ``ConfigError``,
``ShardError``, ...) derive from it, beside the built-in class each had before (a ``ConfigError``
is still a ``ValueError``). ``in_one_line`` turns one into ``error: <its text>`` on stderr and exit
status 2, with no stack trace; every command runs inside it (``hydra_job.run_hydra`` for the Hydra
jobs, ``hydra_job.tool`` for the tools with flags, whose ``main`` returns 2 instead). Anything else
is a bug, and keeps its trace.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable


class UserError(Exception):
    """An error whose message says what to change; shown as one line, exit status 2."""


class SettingError(UserError, ValueError):
    """A setting that cannot work, found by a config's ``validate`` before anything runs."""


def user_line(err: BaseException, explain: Callable[[BaseException], str | None] | None = None) -> str | None:
    """The one line a user sees for ``err``, or None when it is not theirs to fix (a bug: it keeps its
    trace). Theirs: a ``UserError``, a missing input (``FileNotFoundError``), another ``OSError``
    about a named file (permission denied, a read-only or full disk), and whatever ``explain`` gives
    a line for (``storage.remote_error``: an object store's missing credentials, bucket or permission)."""
    if isinstance(err, (UserError, FileNotFoundError)) or (isinstance(err, OSError) and err.filename):
        return str(err)
    return explain(err) if explain and isinstance(err, Exception) else None


@contextlib.contextmanager
def in_one_line(hint: Callable[[], str | None] | None = None,
                explain: Callable[[BaseException], str | None] | None = None):
    """A user's error (``user_line``) ends the command with ``error: <line>`` (and ``hint()``'s line,
    if any) and exit status 2; anything else passes on, with its trace."""
    try:
        yield
    except Exception as err:
        own = user_line(err)  # the command's own error: the hint applies; an object store's does not
        line = own or user_line(err, explain)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        extra = hint() if hint and own else None
        if extra:
            print(extra, file=sys.stderr)
        sys.exit(2)
