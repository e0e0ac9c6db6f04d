"""Imports go one way (reddit_pretrain_app/__init__.py draws the floors): the roof
(``reddit_pretrain_app``: the CLI, the pipeline, the registry, the demo's month) drives both sides
and nothing imports it; the data side and the training side never import each other; the shared
base imports neither; the shard format imports only numpy. Every import statement counts, those
inside functions included."""

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOF = "reddit_pretrain_app"
SIDES = ("extraction", "pretrain")
SHARED = "reddit_pretrain"
FLOORS = {ROOF: 3, "extraction": 2, "pretrain": 2, SHARED: 1}
"""Each package's floor: an import may point at a lower floor only (sides never at each other)."""


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


def package(name: str, deep: bool = False) -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in (REPO / name).glob("**/*.py" if deep else "*.py"))


def top(name: str) -> str:
    return name.split(".")[0]


def test_imports_run_only_down_the_floors_at_the_package_level():
    """The roof imports what it likes; nothing imports the roof; a side never imports the other;
    the shared package imports neither side (its modules, those inside functions included)."""
    wrong = []
    for pkg, floor in FLOORS.items():
        for f in package(pkg, deep=True):
            for name in imported(REPO / f):
                target = top(name)
                if target in FLOORS and target != pkg and FLOORS[target] >= floor:
                    wrong.append(f"{f} imports {name} (floor {FLOORS[target]} from floor {floor})")
    assert wrong == []


def test_the_check_sees_an_import_running_up(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from reddit_pretrain_app.registry import COMMANDS\n")
    assert {top(n) for n in imported(bad)} == {ROOF} and FLOORS[ROOF] > FLOORS[SHARED]


def test_the_training_side_never_imports_the_data_side():
    assert forbidden(package("pretrain"), ["extraction", "pyspark", ROOF]) == []


TAGGER = "extraction/sessions/classifier.py"
"""The one data-side module that may run torch and transformers: a user's Hugging Face classifier
(``filters.classifier``), imported inside its functions, so extract needs neither unless it is on."""


def test_the_data_side_never_imports_the_training_side():
    assert forbidden(package("extraction", deep=True), ["pretrain", "deepspeed", ROOF]) == []
    assert forbidden([f for f in package("extraction", deep=True) if f != TAGGER], ["torch", "transformers"]) == []
    top_level = {alias.name.split(".")[0] for node in ast.parse((REPO / TAGGER).read_text()).body
                 if isinstance(node, (ast.Import, ast.ImportFrom))
                 for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert not top_level & {"torch", "transformers", "fasttext"}


def test_the_shared_base_imports_neither_side():
    assert forbidden(package(SHARED, deep=True), ["extraction", "pretrain", "pyspark", "torch", "transformers", "deepspeed",
                                                  ROOF]) == []


def test_the_shard_format_imports_only_numpy():
    """(and the error base, itself standard library only: what it needs to show a remote error it
    imports when one is shown)"""
    allowed = set(sys.stdlib_module_names) | {"numpy", "__future__"}
    for f in ("reddit_pretrain/shards.py", "reddit_pretrain/documents.py"):
        assert {n.split(".")[0] for n in imported(REPO / f) if n != "reddit_pretrain.errors"} <= allowed, f
    top_level = [node for node in ast.parse((REPO / "reddit_pretrain/errors.py").read_text()).body
                 if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert {(n.module if isinstance(n, ast.ImportFrom) else n.names[0].name).split(".")[0] for n in top_level} <= allowed


def test_a_forbidden_import_is_caught(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from extraction.spark import build_spark\n")
    assert imported(bad) == {"extraction.spark"}


@pytest.mark.parametrize("module, heavy", [("reddit_pretrain.shards", ["pyspark", "torch"]),
                                           ("extraction.sessions.filters", ["torch", "transformers", "deepspeed"])])
def test_importing_a_side_does_not_load_the_other(module, heavy):
    import subprocess

    code = f"import sys, {module}; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr[-2000:]


def _code_strings(path: Path):
    """(line, value) of every string constant of ``path``'s code, docstrings left out, and of every -100."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    docstrings |= {id(node.value) for node in ast.walk(tree)  # attribute docstrings: a bare string after an assignment
                   if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
                and node.operand.value == 100:
            yield node.lineno, -100


LAYOUT_OWNER = "reddit_pretrain/layout.py"
STAGE_NAMES = ["_INGEST_DONE", "_EXTRACT_DONE", "_TOKENIZE_DONE", "ingest_report.json", "extract_report.", "bucket=",
               "month=", "split=", "<|endoftext|>"]
"""What one stage writes and the next reads: named once, in ``reddit_pretrain.layout``."""


def test_stage_to_stage_names_are_written_only_by_their_owner():
    product = package("extraction", deep=True) + package("pretrain") + package(SHARED) + package(ROOF)
    found = [f"{f}:{line}: {value!r}" for f in product if f != LAYOUT_OWNER for line, value in _code_strings(REPO / f)
             if (isinstance(value, str) and any(name in value for name in STAGE_NAMES))
             or (value == -100 and f != "reddit_pretrain_app/synth.py")]  # (the generator's -100 is a comment's score)
    assert found == [], "use reddit_pretrain.layout's names (IGNORE_INDEX for -100)"


def test_the_name_check_finds_a_literal(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('"""A docstring may say _EXTRACT_DONE.json."""\nDONE = "_EXTRACT_DONE.json"\nIGNORE = -100\n')
    assert [value for _, value in _code_strings(bad)] == ["_EXTRACT_DONE.json", -100]


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The import nodes under ``if TYPE_CHECKING:``: annotations only, never run."""
    return {id(inner) for node in ast.walk(tree)
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            for stmt in node.body for inner in ast.walk(stmt)}


def run_time_imports(tree: ast.AST) -> list[str]:
    """Every module an import that runs names: statements at any depth, and
    ``importlib.import_module("...")`` with a literal name (a dynamic import can hide a cycle too)."""
    skip = _type_checking_only(tree)
    targets = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module" \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            targets.append(node.args[0].value)
    return targets


def test_no_import_cycles():
    """Between the project's modules, counting imports inside functions and ``importlib`` calls too:
    none may only hide a cycle. Imports under ``if TYPE_CHECKING:`` never run and do not count."""
    files = package("extraction", deep=True) + package("pretrain") + package("reddit_pretrain")
    modules = {_module(REPO / f): REPO / f for f in files}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for target in run_time_imports(ast.parse(path.read_text())):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):  # a package's own __init__
                deps.add(target)
        graph[name] = deps

    def reaches(start, goal, seen):
        return any(d == goal or (d not in seen and not seen.add(d) and reaches(d, goal, seen)) for d in graph[start])

    cycles = sorted(f"{a} -> {b} -> ... -> {a}" for a in graph for b in graph[a] if reaches(b, a, {b}) or b == a)
    assert cycles == []


def test_the_cycle_check_sees_dynamic_imports_and_skips_type_checking():
    tree = ast.parse("import importlib\nfrom typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from extraction.sessions.filters import LoadedRules\n"
                     "def f():\n    return importlib.import_module('extraction.sessions.features')\n")
    found = run_time_imports(tree)
    assert "extraction.sessions.features" in found
    assert "extraction.sessions.filters" not in found


def test_the_readme_drawing_names_every_stage_folder_and_module():
    """The data-flow drawing on the front page is the layout: each stage folder it names exists and
    holds exactly the modules it lists."""
    text = (REPO / "README.md").read_text()
    start = text.index("## The data flow, and where its code lives")
    drawing = text[start:text.index("```", text.index("```", start) + 3)]
    drawn = {}
    folder = None
    for line in drawing.splitlines():
        for word in line.replace(",", " ").replace(";", " ").split():
            if word.startswith("extraction/") and word.endswith("/"):
                folder = word.rstrip("/")
                drawn.setdefault(folder, set())
            elif folder and word.endswith(".py") and "/" not in word:
                drawn[folder].add(word)
    on_disk = {str(p.relative_to(REPO)): {f.name for f in p.glob("*.py") if f.name != "__init__.py"}
               for p in (REPO / "extraction").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    on_disk.pop("extraction/spark")  # named below the drawing, with what it holds
    assert drawn == on_disk
    assert sorted(p.name for p in (REPO / "extraction").glob("*.py")) == ["__init__.py"], "a module belongs to a stage folder"
