"""The sessions as a Hugging Face dataset: a folder that ``datasets.load_dataset(folder)`` loads with
``train``/``validation``/``test`` splits, typed features and a ``messages`` column in the chat
format TRL's ``SFTTrainer`` and ``tokenizer.apply_chat_template`` take, with a dataset card
(``README.md``, the Hub's YAML header) so that the folder can be pushed to the Hub as it is.

    reddit-pretrain export-dataset work/extract work/dataset [--roles parity|author]
    python -c 'from datasets import load_dataset; print(load_dataset("work/dataset"))'

Rows keep the order of ``sessions/split=<split>/`` (its files by name, their rows in order) and every
column of a session but ``turns``, whose texts are the messages' contents, in turn order.

Roles (``--roles``): a session is a chain of replies, and what a model learns to write is the last
one (the response). ``parity`` (the default): the last turn is ``assistant``, the one before it
``user``, alternating back to the first (a session of an odd number of turns starts with
``assistant``). ``author``: every turn written by the response's author is ``assistant``, every
other turn ``user`` (two turns in a row can then have one role; a ``[deleted]`` author is nobody's).
"""

from __future__ import annotations

import argparse
import json
import sys

from reddit_pretrain import layout, storage
from reddit_pretrain.errors import UserError
from reddit_pretrain.hydra_job import tool
from reddit_pretrain.layout import TEST, TRAIN, VALID

SPLITS = {TRAIN: "train", VALID: "validation", TEST: "test"}
"""Our split names -> the Hub's."""
"""The extract's split names -> the Hub's."""
ROLES = ("parity", "author")
MARKER = "reddit_pretrain_dataset.json"
"""Written into every dataset export: a folder holding it may be replaced by a later export."""
ROWS_PER_FILE = 200_000
DELETED = "[deleted]"


class DatasetExportError(UserError, RuntimeError):
    """An extract folder that cannot be exported (one line)."""


def roles_of(num_turns: int, authors: list | None, mode: str) -> list[str]:
    """The chat role of each turn of a session (the module's docstring says how)."""
    if mode == "parity":
        return ["assistant" if (num_turns - 1 - i) % 2 == 0 else "user" for i in range(num_turns)]
    if mode != "author":
        raise DatasetExportError(f"--roles must be one of {', '.join(ROLES)}, not {mode!r}")
    authors = list(authors or [None] * num_turns)
    replier = authors[-1]
    return ["assistant" if i == num_turns - 1 or (a == replier and a not in (None, DELETED)) else "user"
            for i, a in enumerate(authors)]


def _messages(table, mode: str):
    """The ``messages`` column of a batch of sessions."""
    import pyarrow as pa

    turns = table.column("turns").to_pylist()
    authors = table.column("authors").to_pylist() if "authors" in table.column_names else [None] * len(turns)
    rows = [[{"role": r, "content": t} for r, t in zip(roles_of(len(ts), au, mode), ts)] for ts, au in zip(turns, authors)]
    return pa.array(rows, type=MESSAGE_TYPE())


def MESSAGE_TYPE():  # noqa: N802 (a type, built on first use: pyarrow is imported lazily)
    import pyarrow as pa

    return pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def _split_files(extract: str, split: str) -> list[str]:
    """The split's Parquet files, in name order (none for an empty split)."""
    try:
        return storage.expand_inputs([storage.join(extract, layout.SESSIONS, layout.split_folder(split), "*.parquet")])
    except FileNotFoundError:
        return []


def _schema(extract: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for split in SPLITS:
        files = _split_files(extract, split)
        if files:
            fs, path = storage.filesystem(files[0])
            with fs.open(path, "rb") as f:
                schema = pq.ParquetFile(f).schema_arrow
            fields = [f for f in schema if f.name not in ("turns", "split")]
            at = next(i for i, f in enumerate(fields) if f.name == "session_id") + 1
            return pa.schema(fields[:at] + [pa.field("messages", MESSAGE_TYPE())] + fields[at:])
    raise DatasetExportError(f"{extract} has no sessions ({layout.SESSIONS}/{layout.split_folder('|'.join(SPLITS))}/*.parquet): "
                             "give the output folder of reddit-pretrain extract")


def _open(url: str, mode: str):
    fs, path = storage.filesystem(url)
    return fs.open(path, mode)


def export_dataset(extract: str, out: str, roles: str = "parity", rows_per_file: int = ROWS_PER_FILE,
                   overwrite: bool = False) -> dict:
    """Writes the dataset folder ``out`` from the extract folder ``extract`` (either may be a URL);
    returns its split sizes. The folder is built beside ``out`` and renamed into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if roles not in ROLES:
        raise DatasetExportError(f"--roles must be one of {', '.join(ROLES)}, not {roles!r}")
    if rows_per_file < 1:
        raise DatasetExportError(f"--rows-per-file must be >= 1, not {rows_per_file}")
    if not storage.exists(storage.join(extract, layout.EXTRACT_DONE)):
        raise DatasetExportError(f"{extract} is not a finished extract (no {layout.EXTRACT_DONE}): run reddit-pretrain "
                                 "extract to the end first")
    storage.check_writable(out)
    storage.check_replaceable(out, "the dataset export", owned=set(), marker=MARKER, overwrite=overwrite, reads=extract)
    schema = _schema(extract)
    sizes: dict[str, dict] = {}
    with storage.building(out) as tmp:  # a killed export's leftover removed first; a full or read-only disk is one line

        def write(table, split: str, written: list) -> None:
            name = f"data/{split}-{len(written):05d}.parquet"
            with _open(storage.join(tmp, name), "wb") as f:
                pq.write_table(table, f, compression="zstd")
            written.append((name, table.num_rows, table.nbytes))

        fs, data = storage.filesystem(storage.join(tmp, "data"))
        fs.makedirs(data, exist_ok=True)
        for split, hub in SPLITS.items():
            written: list[tuple[str, int, int]] = []  # (name, rows, bytes)
            pending: list = []
            for file in _split_files(extract, split):
                with _open(file, "rb") as f:
                    for batch in pq.ParquetFile(f).iter_batches(batch_size=10_000):
                        table = pa.Table.from_batches([batch])
                        pending.append(pa.table([_messages(table, roles) if name == "messages" else table.column(name)
                                                 for name in schema.names], schema=schema))
                        while sum(t.num_rows for t in pending) >= rows_per_file:
                            full = pa.concat_tables(pending)
                            write(full.slice(0, rows_per_file), hub, written)
                            pending = [full.slice(rows_per_file)]
            rest = pa.concat_tables(pending) if pending else schema.empty_table()
            if rest.num_rows:  # an empty split gets no file, and the card does not list it (datasets cannot load one)
                write(rest, hub, written)
            for i, (name, _, _) in enumerate(written):  # the Hub's names: train-00000-of-00003.parquet
                storage.rename(storage.join(tmp, name), storage.join(tmp, f"data/{hub}-{i:05d}-of-{len(written):05d}.parquet"))
            sizes[hub] = {"num_examples": sum(r for _, r, _ in written), "num_bytes": sum(b for _, _, b in written),
                          "files": len(written)}
        report = _read_report(extract)
        storage.write_bytes_atomic(storage.join(tmp, "README.md"), dataset_card(schema, sizes, report, roles).encode())
        storage.write_json_atomic(storage.join(tmp, MARKER), {"extract": extract, "roles": roles, "splits": sizes,
                                                             "code_version": (report.get("run") or {}).get("code_version")})
    return sizes


def _read_report(extract: str) -> dict:
    try:
        return storage.read_json(storage.join(extract, layout.EXTRACT_REPORT))
    except (OSError, ValueError):
        return {}


def _feature_yaml(field, indent: str) -> list[str]:
    """One feature of the Hub's ``dataset_info.features`` YAML."""
    import pyarrow as pa

    def dtype(t) -> str:
        if pa.types.is_dictionary(t):
            t = t.value_type
        names = {pa.string(): "string", pa.large_string(): "string", pa.int64(): "int64", pa.int32(): "int32",
                 pa.float64(): "float64", pa.float32(): "float32", pa.bool_(): "bool"}
        if t not in names:
            raise DatasetExportError(f"column type {t} has no dataset feature here")
        return names[t]

    t = field.type
    lines = [f"{indent}- name: {field.name}"]
    if pa.types.is_list(t) and pa.types.is_struct(t.value_type):
        lines.append(f"{indent}  list:")
        for child in t.value_type:
            lines += [f"{indent}  - name: {child.name}", f"{indent}    dtype: {dtype(child.type)}"]
    elif pa.types.is_list(t):
        lines.append(f"{indent}  list: {dtype(t.value_type)}")
    else:
        lines.append(f"{indent}  dtype: {dtype(t)}")
    return lines


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return name
    return "100M<n<1B"


def dataset_card(schema, sizes: dict, report: dict, roles: str) -> str:
    """The folder's README.md: the Hub's YAML header (configs, splits, features, sizes), then what the
    data is, how it was made (the extraction config, each rule's drops, the code version), how to
    load it, and the terms and the authors' pseudonyms."""
    config = report.get("config") or {}
    privacy = config.get("privacy") or {}
    languages = (config.get("filters") or {}).get("languages") or ["en"]
    total = sum(s["num_examples"] for s in sizes.values())
    present = {hub: s for hub, s in sizes.items() if s["num_examples"]}
    if not present:
        raise DatasetExportError("every split is empty: the extract kept no session")
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for hub in present:
        lines += [f"  - split: {hub}", f"    path: data/{hub}-*"]
    lines += ["dataset_info:", "  features:"]
    for field in schema:
        lines += _feature_yaml(field, "  ")
    lines += ["  splits:"]
    for hub, s in present.items():
        lines += [f"  - name: {hub}", f"    num_bytes: {s['num_bytes']}", f"    num_examples: {s['num_examples']}"]
    lines += [f"  dataset_size: {sum(s['num_bytes'] for s in sizes.values())}",
              "language:", *[f"- {code}" for code in languages], "license: other",
              "license_name: reddit-terms", "license_link: https://redditinc.com/policies/user-agreement",
              "task_categories:", "- text-generation", "tags:", "- conversational", "- reddit", "- dialogpt",
              "- reddit-pretrain", "size_categories:", f"- {_size_category(total)}",
              "pretty_name: Reddit conversations (reddit-pretrain)", "---", ""]
    code = (report.get("run") or {}).get("code_version", "unknown")
    lines += ["# Reddit conversations", "",
              f"Dialogue sessions (root-to-leaf comment chains) extracted from Pushshift Reddit dumps by reddit-pretrain "
              f"({code}), DialoGPT style. {total:,} sessions: "
              + ", ".join(f"{hub} {s['num_examples']:,}" for hub, s in sizes.items()) + "."
              + ("" if len(present) == len(sizes) else " An empty split has no files and is not listed above."), "",
              "## Use", "", "```python", "from datasets import load_dataset",
              'ds = load_dataset("<this folder or its Hub name>")',
              'print(ds["train"][0]["messages"])   # [{"role": "user", "content": ...}, {"role": "assistant", ...}]',
              "text = tokenizer.apply_chat_template(ds[\"train\"][0][\"messages\"], tokenize=False)", "```", "",
              "TRL's `SFTTrainer` takes the `messages` column as it is.", "",
              "## Columns", "",
              "- `messages`: the turns in order, each `{role, content}`. "
              + ("Roles by parity: the last turn (the response) is `assistant`, the one before it `user`, alternating "
                 "back to the first." if roles == "parity" else
                 "Roles by author: every turn by the response's author is `assistant`, the others `user`."),
              "- `session_id` (Reddit's id of its last comment, the response), `turn_ids` (the ids of its turns), "
              "`link_id` (its submission): stable ids across extractions.",
              "- `subreddit`, `scores`, `created_utc` per turn, `language` and its confidence, `num_turns`, `chain_end` "
              "(why the chain stops where it does), `has_title`, `over_18`.",
              "- `authors`: " + ("pseudonyms (a salted hash of the Reddit name; `[deleted]` stays), not Reddit names."
                                 if privacy.get("pseudonymize_authors") else
                                 "**Reddit user names as they are** (this extraction did not pseudonymise them)."), ""]
    rules = report.get("rules") or []
    if rules:
        lines += ["## How it was made", "", "Each rule in order, with the sessions it saw and dropped:", "",
                  "| rule | in | dropped | % |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {r['rule']} | {r['in']:,} | {r['out']:,} | {r['percent']:.2f} |" for r in rules if r.get("settings", {}).get("on", True)]
        sessions = report.get("sessions") or {}
        lines += ["", f"Candidate sessions {sessions.get('candidates', '?'):,}, kept {sessions.get('kept', '?'):,}."
                  if isinstance(sessions.get("candidates"), int) else "", ""]
    if config:
        lines += ["The extraction config:", "", "```json", json.dumps(config, indent=1, sort_keys=True), "```", ""]
    lines += ["## Terms and privacy", "",
              "The texts are Reddit users' comments, subject to Reddit's User Agreement and its terms for data use; "
              "check them before you publish this dataset or a model trained on it. "
              + ("PII in the texts (e-mail addresses, phone numbers, IP addresses) was masked. " if privacy.get("scrub_pii") else
                 "PII in the texts was **not** masked. ")
              + ("Authors are pseudonymous: the same salt gives the same pseudonym, and without the salt no name can be "
                 "recovered; mentions of users (`u/name`) carry the pseudonyms too." if privacy.get("pseudonymize_authors")
                 else "Authors are stored under their Reddit names."), ""]
    return "\n".join(lines)


@tool
def main(argv: list[str] | None = None) -> int:
    from reddit_pretrain.hydra_job import prog

    parser = argparse.ArgumentParser(
        prog=prog("python -m extraction.sessions.export_dataset"), formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Write the sessions of an extract as a Hugging Face dataset folder: train/validation/test "
                    "Parquet files with a messages column (chat format) and a dataset card; "
                    "datasets.load_dataset(OUT) loads it and it can be pushed to the Hub as it is.")
    parser.add_argument("extract", help="the output folder of reddit-pretrain extract")
    parser.add_argument("out", help="folder to write; an earlier dataset export there is replaced, any other content refused")
    parser.add_argument("--roles", choices=ROLES, default="parity",
                        help="parity: the response is assistant, turns alternate back from it; author: the response's "
                             "author's turns are assistant")
    parser.add_argument("--rows-per-file", type=int, default=ROWS_PER_FILE, help="rows per Parquet file at most")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT even when it holds files this did not write")
    args = parser.parse_args(argv)
    sizes = export_dataset(args.extract, args.out, args.roles, args.rows_per_file, args.overwrite)
    print(f"[export-dataset] {args.out}: " + ", ".join(f"{k} {v['num_examples']:,}" for k, v in sizes.items())
          + f"; load with datasets.load_dataset({args.out!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
