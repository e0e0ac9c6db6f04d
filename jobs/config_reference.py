"""Generates the configuration reference in docs/configuration.md from the config dataclasses.

    python jobs/config_reference.py          # rewrite the section between the markers in docs/configuration.md
    python jobs/config_reference.py --check  # exit 1 if it is out of date (the tests run this)

Field documentation is the string literal written under each field in the source.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import types
import typing
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"


def _field_docs(cls) -> dict[str, str]:
    if "__field_docs__" in vars(cls):  # made from declarations (extraction.sessions.filters.FiltersConfig): its base's, then its own
        return {**_field_docs(cls.__mro__[1]), **cls.__field_docs__}
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for node, following in zip(body, body[1:] + [None]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(following, ast.Expr) and isinstance(getattr(following, "value", None), ast.Constant) \
                    and isinstance(following.value.value, str):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _default(f: dataclasses.Field) -> str:
    if f.default is None:
        return "unset"
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return "(group)" if dataclasses.is_dataclass(value) else repr(value)
    return ""


def _rows(cls, prefix: str = "", sections: dict | None = None) -> list[str]:
    """One row per setting; a field whose type is in ``sections`` is one row naming that section."""
    docs = _field_docs(cls)
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if sections and kind in sections:
            rows.append(f"| `{prefix}{f.name}.*` | {kind.__name__} | (group) | every key of the {sections[kind]} section above, "
                        f"under `{prefix}{f.name}.` |")
            continue
        if dataclasses.is_dataclass(kind):
            rows += _rows(kind, f"{prefix}{f.name}.")
            continue
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:  # Optional[X], X | None: X, or unset
            kind = args[0]
            name = f"{getattr(kind, '__name__', kind)} or unset"
        else:
            name = getattr(kind, "__name__", None) or str(kind).replace("typing.", "")
        text = docs.get(f.name, "").replace("|", "\\|")
        rows.append(f"| `{prefix}{f.name}` | {name} | `{_default(f)}` | {text} |")
    return rows


def reference() -> str:
    """A section per Hydra job of the registry (``reddit_pretrain_app.registry``), in its order with
    the pipeline last; the pipeline's stage sections name the job sections above."""
    from reddit_pretrain_app.registry import hydra_jobs

    jobs = sorted(hydra_jobs(), key=lambda c: c.name == "pipeline")
    classes = {c.name: c.load(c.config) for c in jobs}
    sections = {classes[c.name]: c.name.capitalize() for c in jobs if c.name != "pipeline"}
    parts = []
    for job in jobs:
        cls = classes[job.name]
        parts.append(f"#### {job.name.capitalize()} (`conf/{job.name}.yaml`, `{cls.__module__}.{cls.__name__}`)\n")
        parts.append("| key | type | default | meaning |\n| --- | --- | --- | --- |")
        parts += _rows(cls, sections=sections if job.name == "pipeline" else None)
        parts.append("")
        if job.name == "extract":
            parts += _rules()
    return "\n".join(parts)


def _presets() -> dict[str, object]:
    """The FiltersConfig of each rule preset (``conf/preset/*.yaml``), the project's own first."""
    from omegaconf import OmegaConf

    from reddit_pretrain import CONF_DIR
    from extraction.sessions.filters import FiltersConfig

    names = sorted(p.stem for p in Path(CONF_DIR, "preset").glob("*.yaml"))
    names = ["project"] + [n for n in names if n != "project"]
    out = {}
    for name in names:
        values = OmegaConf.load(Path(CONF_DIR, "preset", f"{name}.yaml"))
        out[name] = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(FiltersConfig), values.get("filters", {})))
    return out


def _rules() -> list[str]:
    """The rules in the order they are tried, from their one declaration (``extraction.sessions.filters.RULES``),
    and what each reads under each preset (``conf/preset/``)."""
    from extraction.sessions.filters import RULES

    presets = _presets()
    rows = ["Rules, in the order they are tried (a session is counted under the first it fails; `extraction.sessions.filters.RULES`), "
            "and which turns each reads under each preset (`preset=<name>`; *response*: the last turn; *comment turns*: "
            "every turn but a submission title; *any turn*: the title too):\n",
            "| rule (`filters.<rule>` switch) | kind | thresholds | " + " | ".join(f"`{p}`" for p in presets) + " |",
            "| --- | --- | --- | " + " | ".join("---" for _ in presets) + " |"]
    for rule in RULES:
        thresholds = ", ".join(f"`filters.{t}`" for t in rule.thresholds)
        reads = " | ".join(rule.reads_in(cfg) for cfg in presets.values())
        name = f"`{rule.name}`" + (f" (`filters.{rule.switch}`)" if rule.switch != rule.name else "")
        rows.append(f"| {name} | {rule.kind} | {thresholds} | {reads} |")
    return rows + [""]


DOC = REPO / "docs" / "configuration.md"


def main() -> int:
    readme = DOC.read_text()
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    new = readme[:start] + "\n" + reference() + "\n" + readme[end:]
    if "--check" in sys.argv:
        if new != readme:
            print("docs/configuration.md is out of date: run python jobs/config_reference.py")
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
