"""The one way every job becomes a Hydra command line (``python -m <module> key=value ...``).

Besides composing the config, this owns two things every job shares:

* ``--help`` (``-h``): what the job does, its own config groups with their options, and the
  composed config (with any overrides given), instead of Hydra's generic page.
* The precedence of an experiment against the groups a user picks. An experiment
  (``conf/experiment/*.yaml``) picks group options and sets values on top of them. A group the user
  names on the command line (``experiment=demo model=gpt2-124m``) wins over the experiment's pick
  *and* its values for that group: the group's section is the user's option plus the user's own
  ``key=value`` overrides, and a line says which of the experiment's values were not applied.
  ``key=value`` overrides always win over everything.
* Group names on the command line when a job places groups inside its own config (the pipeline's
  ``model=gpt2-124m`` is ``model@train.model=gpt2-124m`` in its defaults list): ``aliases``.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Callable

_GROUP_PICK = re.compile(r"^([A-Za-z_][\w/]*)=(.*)$")
_HIDDEN_GROUPS = "hydra/"  # Hydra's own groups (hydra/job_logging, ...)
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
                     "--experimental-rerun"}


PROG: str | None = None
"""The command line's name when a job runs under the ``reddit-pretrain`` command (set by the command)."""


def prog(default: str) -> str:
    """The name a job's ``--help`` gives its command: ``reddit-pretrain <command>``, or ``default``
    (``python -m <module>``) when run as a module."""
    return PROG or default


def register_schemas(config_name: str, schema: type, groups: dict[str, type] | None = None) -> None:
    """Stores the typed schema of ``conf/<config_name>.yaml`` as ``<config_name>_schema`` and that of
    each config group as ``<group>_schema`` (the names the YAML defaults lists use)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name=f"{config_name}_schema", node=_unset_defaults(schema))
    for group, node in (groups or {}).items():
        store.store(group=group, name=f"{group}_schema", node=_unset_defaults(node))


def _unset_defaults(schema: type):
    """``schema`` as a typed node whose settings that a config class resolves itself when left
    unset (its ``__unset_fields__``: the rule switches of ``extraction.sessions.filters.FiltersConfig``, which
    follow ``filters.rules``) stay unset, so the YAML and the command line decide them, not the
    default instance a ``default_factory`` made."""
    import dataclasses

    from omegaconf import OmegaConf, open_dict

    node = OmegaConf.structured(schema)

    def walk(cfg, cls) -> None:
        for f in dataclasses.fields(cls):
            value = cfg.get(f.name) if f.name in cfg else None
            kind = OmegaConf.get_type(cfg, f.name) if f.name in cfg else None
            if f.name in getattr(cls, "__unset_fields__", ()):
                with open_dict(cfg):
                    cfg[f.name] = None
            elif kind is not None and dataclasses.is_dataclass(kind) and value is not None:
                walk(value, kind)

    walk(node, schema)
    return node


def _conf_dir() -> str:
    from reddit_pretrain import CONF_DIR

    return CONF_DIR


def group_options(group: str) -> list[str]:
    """The options of a config group: the YAML files in ``conf/<group>/`` (schemas are not options)."""
    folder = os.path.join(_conf_dir(), group)
    return sorted(name[:-5] for name in os.listdir(folder) if name.endswith(".yaml")) if os.path.isdir(folder) else []


def _about(module_doc: str | None) -> str:
    """The job's docstring up to its first plain paragraph after the summary and usage lines."""
    if not module_doc:
        return ""
    paragraphs = module_doc.strip().split("\n\n")
    keep = [paragraphs[0]]
    if len(paragraphs) > 1 and paragraphs[1].startswith("    "):
        keep.append(paragraphs[1])
    return "\n\n".join(keep)


def _compose(config_name: str, overrides: list[str]):
    """The job's effective config outside a run (``--help``, ``--cfg job``): composed, then the
    experiment precedence applied. Returns (config without ``hydra``, the group choices)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf, open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=_conf_dir(), version_base=None):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
        with open_dict(cfg):
            del cfg["hydra"]
        apply_user_picks(cfg, config_name, choices, overrides)
    return cfg, choices


def help_text(config_name: str, overrides: list[str], module_doc: str | None, command: str, example: str) -> str:
    """The ``--help`` page of one job: its purpose, its groups (current pick marked), its config."""
    from omegaconf import OmegaConf

    cfg, choices = _compose(config_name, overrides)
    choices = {g: c for g, c in choices.items() if not g.startswith(_HIDDEN_GROUPS)}
    groups = "[group=option ...] " if choices else ""
    lines = [_about(module_doc), "", f"usage: {command} {groups}[key=value ...]",
             "  key=value sets any key below" + ("; group=option picks a file of conf/<group>/" if groups else "")
             + "; quote values holding '=', ',' or spaces",
             f"  (e.g. {example}); --cfg job prints the config alone; every key is",
             "  documented in docs/configuration.md."]
    if choices:
        lines += ["", "== Groups (the current pick in [brackets]) =="]
        for group in sorted(choices):
            name = group.split("@")[0]  # a group placed inside a stage's config (the pipeline's model@train.model)
            options = [f"[{o}]" if o == choices[group] else o for o in group_options(name)]
            lines.append(f"  {name}: {', '.join(options)}" + ("   (none picked)" if choices[group] is None else ""))
    lines += ["", "== Config (with the overrides given) ==", OmegaConf.to_yaml(cfg).rstrip()]
    return "\n".join(lines)


def apply_user_picks(cfg, config_name: str, choices: dict, task_overrides: list[str]) -> list[str]:
    """Applies the experiment precedence (module docstring) to the composed ``cfg`` in place, inside
    an initialised Hydra. Returns the notes (one per group whose experiment values were not applied)."""
    from hydra import compose
    from omegaconf import OmegaConf, open_dict

    experiment = choices.get("experiment")
    if not experiment:
        return []
    picked = {}
    for override in task_overrides:
        match = _GROUP_PICK.match(override)
        if match and match.group(1) in choices and match.group(1) != "experiment":
            picked[match.group(1)] = match.group(2)
    path = os.path.join(_conf_dir(), "experiment", f"{experiment}.yaml")
    if not picked or not os.path.exists(path):
        return []
    experiment_values = OmegaConf.load(path)
    clashes = [g for g in picked if g in experiment_values]
    if not clashes:
        return []
    without = compose(config_name, overrides=[o for o in task_overrides if not o.startswith("experiment=")])
    notes = []
    for group in clashes:
        with open_dict(cfg):
            cfg[group] = without[group]
        keys = [f"{group}.{k}" for k in experiment_values[group]]
        notes.append(f"note: you picked {group}={picked[group]}, so experiment={experiment}'s {', '.join(keys)} "
                     f"{'is' if len(keys) == 1 else 'are'} not applied (set them with key=value)")
    return notes


def _aliased(arg: str, aliases: dict[str, str]) -> str:
    match = _GROUP_PICK.match(arg)
    return f"{aliases[match.group(1)]}={match.group(2)}" if match and match.group(1) in aliases else arg


def override_problem(args: list[str]) -> str | None:
    """One line for command-line overrides Hydra's grammar cannot read (an unquoted space, comma or
    bracket in a value), with the quoting that works; None when all parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    overrides, skip = [], False
    for arg in args:  # Hydra's own flags, and the values of those that take one
        if skip or arg.startswith("-"):
            skip = not skip and arg in _FLAGS_WITH_VALUE
            continue
        overrides.append(arg)
    parser = OverridesParser.create()
    for i, arg in enumerate(overrides):
        try:
            parser.parse_overrides([arg])
        except OverrideParseException as err:
            reason = str(err).strip().splitlines()[0].strip() if str(err).strip() else "unreadable"
            previous = overrides[i - 1] if i else None
            if "=" not in arg and previous and "=" in previous:  # a path with a space, split by the shell
                key, _, value = previous.partition("=")
                return (f"cannot read the override {arg!r} (no '='): it looks like the rest of {previous!r}, split at a "
                        f"space by the shell; quote the whole value: '{key}=\"{value} {arg}\"'")
            key, eq, value = arg.partition("=")
            example = f"'{key}=\"{value}\"'" if eq else f"'key=\"{arg}\"'"
            return (f"cannot read the override {arg!r} ({reason}): quote a value holding spaces, commas, brackets or "
                    f"other special characters, e.g. {example} (the outer quotes are for the shell)")
    return None


def _split_override(arg: str) -> tuple[str, str, str] | None:
    """(prefix ``+``/``++``/``~`` or "", key, value) of a ``key=value`` override; None for a flag."""
    if arg.startswith("-") or "=" not in arg and not arg.startswith("~"):
        return None
    key, _, value = arg.partition("=")
    prefix = "++" if key.startswith("++") else key[0] if key[:1] in ("+", "~") else ""
    return prefix, key[len(prefix):], value


def _dotted_keys(node, prefix: str = "") -> list[str]:
    """Every key of a composed config, dotted (``trainer.max_steps``), sections included."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append(prefix + str(key))
            out += _dotted_keys(value, f"{prefix}{key}.")
    return out


def _closest(word: str, candidates: list[str], n: int = 3) -> list[str]:
    """The keys a mistyped ``word`` likely meant: those it is the end of (the pipeline's
    ``train.trainer.max_steps`` for ``trainer.max_steps``), then the closest spellings."""
    import difflib

    suffix = [k for k in candidates if k.endswith("." + word)]
    parent, _, tail = word.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in candidates if k.rpartition(".")[0] == parent}
    spelled = [siblings[t] for t in difflib.get_close_matches(tail, list(siblings), n=n, cutoff=0.6)]
    anywhere = difflib.get_close_matches(word, candidates, n=n, cutoff=0.85)
    return list(dict.fromkeys(suffix + spelled + anywhere))[:n]


def check_overrides(config_name: str, args: list[str], command: str = "the command") -> tuple[str | None, list[str]]:
    """(one line for the first override that names no key or option, or None; the arguments with a
    single value given to a list setting wrapped as a list, ``inputs=x.zst`` -> ``inputs=[x.zst]``).

    A group pick must name a file of ``conf/<group>/``; ``key=value`` a key the typed config has;
    ``+key=value`` may only add to a free-form dict (``spark.conf``): on a typed section it would be
    ignored, so it is refused with the key meant."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import DictConfig, ListConfig, OmegaConf

    parsed = [(a, _split_override(a)) for a in args]
    if not any(p for _, p in parsed) or any(a.startswith(("--config-dir", "--config-name", "-cd", "-cn", "--config-path"))
                                            for a in args):
        return None, args
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=_conf_dir(), version_base=None):
        base = compose(config_name, return_hydra_config=True)
        choices = {g: c for g, c in OmegaConf.to_container(base.hydra.runtime.choices).items() if not g.startswith(_HIDDEN_GROUPS)}
        picks = []
        for arg, p in parsed:
            if p and p[0] in ("", "+") and p[1] in choices:
                group = p[1].split("@")[0]
                options = group_options(group)
                if p[2] not in options and p[2] != "null":
                    close = _closest(p[2], options)
                    return (f"{group}={p[2]}: conf/{group}/ has no option {p[2]!r}"
                            + (f"; did you mean {' or '.join(close)}?" if close else "") + f" (options: {', '.join(options)})"), args
                picks.append(arg)
        cfg = compose(config_name, overrides=picks)
    tree = OmegaConf.to_container(cfg, resolve=False)
    known = _dotted_keys(tree)
    fixed = []
    for arg, p in parsed:
        if p is None or p[1] in choices or p[1].startswith(("hydra.", "hydra/")) or p[0] == "~":
            fixed.append(arg)
            continue
        prefix, key, value = p
        if key in known:
            if prefix == "+":
                return f"{arg}: {key} is already a setting; set it without the '+' ({key}={value})", args
            if isinstance(OmegaConf.select(cfg, key), ListConfig) and not value.startswith("[") and value not in ("null", ""):
                arg = f"{prefix}{key}=[{value}]"  # one value for a list: a list of one
            fixed.append(arg)
            continue
        parts = key.split(".")
        sections = [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]
        free_form = any(s in known and isinstance(OmegaConf.select(cfg, s), DictConfig)
                        and OmegaConf.get_type(OmegaConf.select(cfg, s)) is dict for s in sections)
        if prefix in ("+", "++") and free_form:  # spark.conf.<any Spark setting>
            fixed.append(arg)
            continue
        close = _closest(key, [k for k in known if not k.startswith("hydra")])
        did_you_mean = f"; did you mean {' or '.join(close)}?" if close else ""
        typed = next((s for s in sections if s in known), None)
        if not prefix:
            where = "no such setting"
        elif typed:
            where = f"'+' adds keys only to free-form sections such as spark.conf; {typed} is a typed section, so it would be ignored"
        else:
            where = f"'+' adds keys only to free-form sections such as spark.conf, and there is no section {parts[0]}"
        return f"{arg}: {where}{did_you_mean} ({command} --help lists every key)", args
    return None, fixed


def run_hydra(config_name: str, schema: type, run: Callable[[object], object], example: str,
              groups: dict[str, type] | None = None, hint: Callable[[], str | None] | None = None,
              aliases: dict[str, str] | None = None) -> None:
    """Registers the typed configs (``register_schemas``), composes ``conf/<config_name>.yaml`` with
    the command line's overrides, and calls ``run`` with the typed config object. A user's error
    (``reddit_pretrain.errors.UserError``, a missing input, an object store's refusal) is one line
    (and ``hint()``'s line, if any), exit status 2, no stack trace. ``example``: a command line of
    the job's own for its ``--help``. ``aliases`` maps a group's command-line name to its place in
    the defaults list (the pipeline's ``model=`` is ``model@train.model=``)."""
    import hydra
    from omegaconf import OmegaConf

    from reddit_pretrain.errors import in_one_line
    from reddit_pretrain.storage import remote_error

    register_schemas(config_name, schema, groups)
    if aliases:
        sys.argv[1:] = [_aliased(a, aliases) for a in sys.argv[1:]]
    args = sys.argv[1:]
    main = sys.modules.get("__main__")
    command = prog(f"python -m {getattr(getattr(main, '__spec__', None), 'name', None) or config_name}")
    if "--help" in args or "-h" in args:
        doc = getattr(sys.modules.get(run.__module__), "__doc__", None) or getattr(main, "__doc__", None)
        print(help_text(config_name, [a for a in args if a not in ("--help", "-h")], doc, command, example))
        return
    problem = override_problem(args)
    if problem is None:
        problem, fixed = check_overrides(config_name, args, command)
        sys.argv[1:] = args = fixed
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    if args[:2] in (["--cfg", "job"], ["-c", "job"]):  # the effective config, precedence applied
        print(OmegaConf.to_yaml(_compose(config_name, args[2:])[0]).rstrip())
        return

    @hydra.main(version_base=None, config_path=_conf_dir(), config_name=config_name)
    def _main(cfg) -> None:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        for note in apply_user_picks(cfg, config_name, dict(hc.runtime.choices), list(hc.overrides.task)):
            print(note, file=sys.stderr)
        with in_one_line(hint, remote_error):
            run(OmegaConf.to_object(cfg))

    _main()


def tool(main: Callable[..., int | None]) -> Callable[..., int]:
    """A tool with flags of its own: its ``main(argv) -> status`` with a user's error
    (``reddit_pretrain.errors.user_line``) printed as one line and status 2, anything else raised."""
    import functools

    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        from reddit_pretrain.errors import user_line
        from reddit_pretrain.storage import remote_error

        try:
            return main(argv) or 0
        except Exception as err:
            line = user_line(err, remote_error)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            return 2

    return wrapped
