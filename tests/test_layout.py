"""Imports go one way (reddit_pretrain/__init__.py draws the layers): the data side and the
training side never import each other, the shared base imports neither, the shard format imports
only numpy, and only the orchestration drives both. Every import statement counts, those inside
functions included."""

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_BASE = ["reddit_pretrain/__init__.py", "reddit_pretrain/cli.py", "reddit_pretrain/storage.py",
               "reddit_pretrain/shards.py", "reddit_pretrain/documents.py"]
ORCHESTRATION = ["reddit_pretrain/pipeline.py", "reddit_pretrain/command.py"]  # drive both sides


def imported(path: Path) -> set[str]:
    """Top-level names of every module an import statement in ``path`` names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def forbidden(files, prefixes) -> list[str]:
    return [f"{f} imports {name}" for f in files for name in sorted(imported(REPO / f))
            if any(name == p or name.startswith(p + ".") for p in prefixes)]


def package(name: str) -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in (REPO / name).glob("*.py"))


def test_the_layers_are_the_ones_drawn():
    assert sorted(package("reddit_pretrain")) == sorted(SHARED_BASE + ORCHESTRATION), "a new module: give it its layer here"


def test_the_training_side_never_imports_the_data_side():
    assert forbidden(package("pretrain"), ["extraction", "pyspark", "reddit_pretrain.pipeline"]) == []


TAGGER = "extraction/classifier.py"
"""The one data-side module that may run torch and transformers: a user's Hugging Face classifier
(``filters.classifier``), imported inside its functions, so extract needs neither unless it is on."""


def test_the_data_side_never_imports_the_training_side():
    assert forbidden(package("extraction"), ["pretrain", "deepspeed", "reddit_pretrain.pipeline"]) == []
    assert forbidden([f for f in package("extraction") if f != TAGGER], ["torch", "transformers"]) == []
    top_level = {alias.name.split(".")[0] for node in ast.parse((REPO / TAGGER).read_text()).body
                 if isinstance(node, (ast.Import, ast.ImportFrom))
                 for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert not top_level & {"torch", "transformers", "fasttext"}


def test_the_shared_base_imports_neither_side():
    assert forbidden(SHARED_BASE, ["extraction", "pretrain", "pyspark", "torch", "transformers", "deepspeed",
                                   "reddit_pretrain.pipeline"]) == []


def test_the_shard_format_imports_only_numpy():
    allowed = set(sys.stdlib_module_names) | {"numpy", "__future__"}
    for f in ("reddit_pretrain/shards.py", "reddit_pretrain/documents.py"):
        assert {n.split(".")[0] for n in imported(REPO / f)} <= allowed, f


def test_a_forbidden_import_is_caught(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from extraction.spark import build_spark\n")
    assert imported(bad) == {"extraction.spark"}


@pytest.mark.parametrize("module, heavy", [("reddit_pretrain.shards", ["pyspark", "torch"]),
                                           ("extraction.filters", ["torch", "transformers", "deepspeed"])])
def test_importing_a_side_does_not_load_the_other(module, heavy):
    import subprocess

    code = f"import sys, {module}; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr[-2000:]
