"""What reaches the user's console from the libraries the trainer runs: their real problems, not
their start-up chatter.

* ``captured_output()``: what C code and compiler probes write straight to file descriptors 1 and 2
  (DeepSpeed's op-build checks print gcc command lines and "built successfully" at every start;
  zero_to_fp32 prints a line per step and progress bars) goes to a temporary file, shown only when
  the block fails.
* ``quiet_libraries()``: warnings a user cannot act on (DeepSpeed calling torch's deprecated
  ``all_gather_into_tensor``), Hugging Face progress bars and advice on the calls we make.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings


@contextlib.contextmanager
def captured_output():
    """Redirects fds 1 and 2 into a temporary file for the block; on an exception the captured text
    is written to stderr before the exception goes on."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    sink = tempfile.TemporaryFile()
    try:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
    except BaseException:
        sink.seek(0)
        sys.stderr.write(sink.read().decode(errors="replace"))
        raise
    finally:
        os.close(saved[0])
        os.close(saved[1])
        sink.close()


def quiet_libraries() -> None:
    """Filters the library warnings a user cannot act on; call once at a command's start."""
    warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor.* is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*reduce_scatter_tensor.* is deprecated", category=FutureWarning)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def say(msg: str, rank: int = 0) -> None:
    """``[train] msg`` on the console, from rank 0 only (every rank may call it)."""
    if rank == 0:
        print(f"[train] {msg}", flush=True)
