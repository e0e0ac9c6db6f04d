"""What the data side (``extraction``) and the training side (``pretrain``) share. It imports
neither side; the roof above both (``reddit_pretrain_app``: the CLI, the pipeline, the registry)
is a package of its own. Imports go one way (``tests/test_layout.py`` holds them to it):

    reddit_pretrain_app                      the roof: drives both packages; nothing imports it
         |                  |
    extraction (Spark)   pretrain (torch, DeepSpeed)      never import each other
         |                  |
    reddit_pretrain.{shards, documents, storage, layout, errors, hydra_job}   the shared base

* ``shards``: the token shard format (writer, memory-mapped reader, manifest, checksums), numpy only.
* ``documents``: how a session becomes a document (EOS-joined turns, first-turn loss mask).
* ``storage``: local and remote paths, atomic commits by rename, completion markers.
* ``layout``: the names that tie one stage's output to the next one's input.
* ``errors``: ``UserError``, the base of every error a user sees, and the one place it is caught.
* ``hydra_job``: every job's Hydra command line (``--help``, experiment precedence, one-line errors).
* ``CONF_DIR`` (the config folder; in a wheel it is shipped inside this package) and ``code_version``.

Kept free of heavy imports: Spark executors import this package and must not pull in torch.
"""

import os as _os

_HERE = _os.path.dirname(_os.path.abspath(__file__))
CONF_DIR = _os.path.join(_HERE, "conf") if _os.path.isdir(_os.path.join(_HERE, "conf")) \
    else _os.path.join(_os.path.dirname(_HERE), "conf")
"""The project's Hydra config folder: ``conf/`` of the checkout, or the copy an installed wheel
carries in ``reddit_pretrain/conf`` (absolute, so entry points work however they are imported)."""


def code_version() -> str:
    """``<package version>+git.<short commit>`` of the running code (``unknown`` parts when the
    package is not installed or the code is not a git checkout)."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("reddit-pretrain")
    except PackageNotFoundError:
        package = "unknown"
    try:
        rev = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True, stderr=subprocess.DEVNULL,
                                      cwd=_HERE).strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "unknown"
    return f"{package}+git.{rev}"


def require(package: str, extra: str, modules: tuple[str, ...]) -> None:
    """Raises one clear ImportError when ``package`` is imported without its extra's dependencies
    (``pip install "reddit-pretrain[<extra>]"``); looks the modules up without importing them."""
    from importlib.util import find_spec

    import sys

    missing = [m for m in modules if find_spec(m) is None]
    if not missing:
        return
    venv = _os.path.join(_os.path.dirname(_HERE), ".venv", "bin")
    if _os.path.exists(_os.path.join(venv, "python")) and not sys.prefix.startswith(_os.path.dirname(venv)):
        rel = _os.path.relpath(venv)
        venv = venv if rel.startswith("..") else rel
        fix = f"this checkout's environment has them: run {venv}/reddit-pretrain (or {venv}/python), or first: source {venv}/activate"
    else:
        fix = f"install them into it: {sys.executable} -m pip install \"reddit-pretrain[{extra}]\" (or [all])"
    message = (f"{package} needs the {extra!r} dependencies, missing from this Python ({sys.executable}): "
               f"{', '.join(missing)}; {fix}")
    if sys.argv[:1] == ["-m"]:  # python -m <package>.<job>: one line, not an import traceback
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)
    raise ImportError(message)
