"""The extract job's report, owned here: built from the tasks' counts (``merge_reports``), the
parts read from outside them (each rule's settings and share dropped, example rejected sessions,
the ingest side, the run's date and code), the console table, and the picture (PNG) and one
self-contained HTML page a person can open. The ingest job's report is the ingest job's own."""

from __future__ import annotations

import base64
import html
import io
import os
import threading
import time

import numpy as np

from reddit_pretrain import code_version, storage
from reddit_pretrain import layout
from reddit_pretrain.layout import SPLITS
from extraction.sessions import ExtractError
from extraction.sessions.chains import ALL_SESSION_REASONS, histogram_labels
from extraction.sessions.filters import RULES, RULES_BY_NAME, TURN_RULES
from extraction.sessions.privacy import KINDS as PII_KINDS
from extraction.sessions.reddit_threads import WORD_EDGES

EXAMPLES_PER_RULE = 3
EXAMPLE_TURN_CHARS = 120


def merge_reports(cfg, built: list[dict], finished: list[dict]) -> dict:
    """The extract report from the tasks' counts: rules funnel, splits, subreddits, histograms,
    where every comment went, and seconds per stage (task seconds, summed over tasks)."""

    by_reason: dict[str, int] = {}
    per_split: dict[str, int] = {}
    subs: dict[str, list[int]] = {}
    turn_edges = list(range(1, cfg.chains.max_turns + 2))
    turns_hist = np.zeros(len(turn_edges), dtype=np.int64)
    words_hist = np.zeros(len(WORD_EDGES), dtype=np.int64)
    acc = {"used_in_sessions": 0, "not_in_any_session": 0, "only_in_rejected_sessions": {}}
    candidates = two_splits = 0
    near = next((f["near_duplicates"] for f in finished if "near_duplicates" in f), None)  # corpus-wide, one entry
    timed = built + finished  # (every task's seconds, those of the steps between the buckets too)
    finished = [f for f in finished if "report" in f]
    for f in finished:
        r = f["report"]
        candidates += r["candidates"]
        two_splits += r["threads_in_two_splits"]
        for k, v in r["by_reason"].items():
            by_reason[k] = by_reason.get(k, 0) + v
        for k, v in r["per_split"].items():
            per_split[k] = per_split.get(k, 0) + v
        for k, (s, kept) in r["subreddits"].items():
            entry = subs.setdefault(k, [0, 0])
            entry[0] += s
            entry[1] += kept
        for value, count in enumerate(r["num_turns"]):
            turns_hist[min(max(np.searchsorted(turn_edges, value, side="right") - 1, 0), len(turn_edges) - 1)] += count
        words_hist += np.array(r["words"], dtype=np.int64)
        acc["used_in_sessions"] += r["used_in_sessions"]
        acc["not_in_any_session"] += r["not_in_any_session"]
        for k, v in r["only_in_rejected_sessions"].items():
            acc["only_in_rejected_sessions"][k] = acc["only_in_rejected_sessions"].get(k, 0) + v
    unknown = set(by_reason) - set(ALL_SESSION_REASONS)
    if unknown:
        raise ExtractError(f"unknown drop reasons {sorted(unknown)}")
    funnel, remaining = [], candidates
    for rule in ALL_SESSION_REASONS:
        out = by_reason.get(rule, 0)
        funnel.append({"rule": rule, "in": remaining, "out": out})
        remaining -= out
    stats = [b["stats"] for b in built]
    ingested = sum(s["rows"] for s in stats)
    accounting = {
        "comments": ingested,
        "duplicate_ids": sum(s["duplicate_ids"] for s in stats),
        "used_in_sessions": acc["used_in_sessions"],
        "cut_by_turn_rule": {r: sum(s["cut_by_turn_rule"][r] for s in stats) for r in TURN_RULES},
        "only_in_rejected_sessions": {k: acc["only_in_rejected_sessions"][k] for k in ALL_SESSION_REASONS
                                      if k in acc["only_in_rejected_sessions"]},
        "not_in_any_session": acc["not_in_any_session"],
        "parent_cycles": sum(s.get("parent_cycles", 0) for s in stats),
        "pii_masked": {k: sum(s.get("pii", {}).get(k, 0) for s in stats) for k in PII_KINDS},
    }
    accounted = (accounting["duplicate_ids"] + accounting["used_in_sessions"] + sum(accounting["cut_by_turn_rule"].values())
                 + sum(accounting["only_in_rejected_sessions"].values()) + accounting["not_in_any_session"])
    if accounted != ingested:
        raise ExtractError(f"comment accounting does not add up: {accounted} != {ingested}")
    stage_seconds: dict[str, float] = {}
    for result in timed:
        for k, v in result.get("seconds", {}).items():
            stage_seconds[k] = round(stage_seconds.get(k, 0.0) + v, 3)
    top = sorted(subs.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0] or ""))[: cfg.report_top_subreddits]
    return {
        "sessions": {"candidates": candidates, "kept": candidates - sum(by_reason.values()),
                     "per_split": {k: per_split[k] for k in SPLITS if k in per_split}},
        "rules": funnel,
        "threads_in_two_splits": two_splits,
        "subreddits": [{"subreddit": k, "sessions": s, "kept": kept} for k, (s, kept) in top],
        "turns_histogram": dict(zip(histogram_labels(turn_edges), turns_hist.tolist())),
        "words_histogram": dict(zip(histogram_labels(WORD_EDGES), words_hist.tolist())),
        **({"near_duplicates": near} if near is not None else {}),
        "comments": accounting,
        "tasks": len(built),
        "stage_seconds": stage_seconds,
    }


def format_report(report: dict, output: str) -> str:
    """The console table of an extract report."""

    s = report["sessions"]
    lines = [f"Extract report ({output})", f"{'rule':<22}{'in':>12}{'dropped':>12}{'%':>8}"]
    for row in report["rules"]:  # every rule, so a rule that dropped nothing is seen to be on (or off)
        if not row.get("settings", {}).get("on", True):
            lines.append(f"{row['rule']:<22}{'off':>12}")
            continue
        share = f"{100 * row['out'] / row['in']:.1f}" if row["in"] else "0.0"
        lines.append(f"{row['rule']:<22}{row['in']:>12,}{row['out']:>12,}{share:>8}")
    lines.append(f"sessions: {s['candidates']:,} candidates -> {s['kept']:,} kept "
                 + ", ".join(f"{k} {s['per_split'].get(k, 0):,}" for k in SPLITS))
    c = report["comments"]
    cut = ", ".join(f"{k} {c['cut_by_turn_rule'][k]:,}" for k in TURN_RULES if k in c["cut_by_turn_rule"])  # rule order
    lines.append(f"comments: {c['comments']:,} = {c['duplicate_ids']:,} duplicate ids + {c['used_in_sessions']:,} used + "
                 f"{sum(c['cut_by_turn_rule'].values()):,} cut by turn rules ({cut}) + "
                 f"{sum(c['only_in_rejected_sessions'].values()):,} only in rejected sessions + "
                 f"{c['not_in_any_session']:,} in no session")
    if c.get("parent_cycles"):
        lines.append(f"parent cycles: {c['parent_cycles']:,} comments lie on a cycle of parent links (their own parent, "
                     "or A -> B -> A): each one's parent link was cut (chain_end parent_cycle)")
    near = report.get("near_duplicates", {})
    for summary, what in ((near, "replies"), (near.get("sessions", {}), "sessions")):
        if summary.get("clusters"):
            lines.append(f"near-duplicate {what}: {summary['clusters']:,} clusters, sizes "
                         + ", ".join(f"{k}: {v:,}" for k, v in summary["sizes"].items() if v))
    if report.get("batch") and not report["batch"]["earlier"]:
        lines.append(f"batch {report['batch']['name']}: the corpus's first extracted batch")
    elif report.get("batch"):
        b = report["batch"]
        lines.append(f"batch {b['name']} against {', '.join(b['earlier']) or 'no earlier batch'}: "
                     f"{b['earlier_comments_read']:,} earlier comments read as context; differences from one run over "
                     f"all the months: {b['replied_later']:,} earlier sessions whose last turn gained a reply here, "
                     f"{b['newly_frequent_trigrams']:,} trigrams frequent only with this batch (earlier bland not re-decided)"
                     + (f"; {b['near_duplicates_of_earlier']:,} near-duplicate links to earlier sessions, "
                        f"{b['bridged_clusters']:,} earlier clusters this batch bridged (not merged there)"
                        if "bridged_clusters" in b else ""))
    if any(c.get("pii_masked", {}).values()):
        lines.append("PII masked in the stored texts: " + ", ".join(f"{k} {v:,}" for k, v in c["pii_masked"].items()))
    if report.get("stage_seconds"):
        lines.append("task seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in report["stage_seconds"].items()))
    lines.append(f"{report['seconds']:.1f} s; sessions in {output}/sessions, rejects in {output}/rejects, "
                 f"report {output}/{layout.EXTRACT_REPORT_HTML}")
    return "\n".join(lines)


def rule_settings(cfg) -> dict[str, dict]:
    """Per drop reason of the extract report: the settings that decide it (``on`` false when switched
    off). ``cfg`` is an ``ExtractConfig``."""

    settings = {"min_turns": {"on": True, "chains.min_turns": cfg.chains.min_turns},
                "max_turns": {"on": True, "chains.max_turns": cfg.chains.max_turns,
                              "chains.long_chains": cfg.chains.long_chains}}
    for rule in RULES:
        values = {f"filters.{field}": getattr(cfg.filters, field) for field in rule.thresholds}
        settings[rule.name] = {"on": rule.is_on(cfg.filters), **values}
    return settings


def annotate_rules(report: dict, cfg) -> None:
    """Adds to each rule row its share of the sessions it saw (``percent``) and its settings."""
    settings = rule_settings(cfg)
    for row in report["rules"]:
        row["percent"] = round(100.0 * row["out"] / row["in"], 2) if row["in"] else 0.0
        row["settings"] = settings.get(row["rule"], {})
    cut = report["comments"]["cut_by_turn_rule"]
    report["turn_rules"] = [{"rule": name, "comments_cut": count, "settings": settings.get(name, {})}
                            for name, count in cut.items()]


EXAMPLE_COLUMNS = ("drop_reason", "turns", "subreddit", "scores", "over_18", "language", "language_confidence",
                   "classifier_score")
"""What the report reads of a rejected session: its turns and what a rule's ``explain`` may show."""


def rejected_examples(rejects_folder: str, per_rule: int = EXAMPLES_PER_RULE) -> tuple[dict, dict]:
    """Up to ``per_rule`` rejected sessions per drop reason (turns cut to ``EXAMPLE_TURN_CHARS``),
    the first ones in file order: the same input gives the same examples; and beside each, the
    field that decided it when the text does not show it (``_deciding_field``, else None). Reads
    the small ``drop_reason`` column of each file first, the rest only of files that hold a needed one."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    examples: dict[str, list[list[str]]] = {}
    fields: dict[str, list[str | None]] = {}
    fs, root = storage.filesystem(rejects_folder)
    if not fs.exists(root):
        return examples, fields
    for path in sorted(p for p in fs.find(root) if p.endswith(".parquet")):
        with fs.open(path, "rb") as f:
            reasons = pq.read_table(f, columns=["drop_reason"]).column("drop_reason")
        wanted = [r for r in pc.unique(reasons).to_pylist() if len(examples.get(r, [])) < per_rule]
        if not wanted:
            continue
        with fs.open(path, "rb") as f:
            columns = pq.read_schema(f).names
        with fs.open(path, "rb") as f:
            table = pq.read_table(f, columns=[c for c in columns if c in EXAMPLE_COLUMNS])
        for reason in sorted(wanted):
            rows = table.filter(pc.equal(table.column("drop_reason"), reason)).slice(0, per_rule - len(examples.get(reason, [])))
            for row in rows.to_pylist():
                examples.setdefault(reason, []).append(
                    [t if len(t) <= EXAMPLE_TURN_CHARS else t[: EXAMPLE_TURN_CHARS - 1] + "…" for t in row["turns"]])
                fields.setdefault(reason, []).append(_deciding_field(reason, row))
    return examples, fields


def _deciding_field(reason: str, row: dict) -> str | None:
    """What decided a rejection that the turns' text does not show (the score, the subreddit, the
    language): the rule's own ``explain`` (``extraction.sessions.filters.Rule``)."""

    rule = RULES_BY_NAME.get(reason)
    return rule.explain(row) if rule is not None and rule.explain is not None else None


def ingest_summary(ingest_report: dict) -> dict:
    """The ingest side of an extraction: the dumps read (name, status, lines, rows) and the lines
    set aside, by reason."""
    totals = ingest_report.get("totals", {})
    return {
        "inputs": [{"file": os.path.basename(f.get("path", "")), "kind": f.get("kind"), "status": f.get("status"),
                    "lines": f.get("lines"), "rows": f.get("rows"), "rejects": f.get("rejects")}
                   for f in ingest_report.get("files", [])],
        "lines": totals.get("lines"),
        "rejects_by_reason": totals.get("rejects_by_reason", {}),
        "rows_outside_file_month": totals.get("rows_outside_file_month", 0),
    }


def run_info() -> dict:
    """When and with which code the report was made."""
    return {"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "code_version": code_version()}


_plotting: threading.Thread | None = None


def load_plotting_in_background() -> None:
    """Starts loading matplotlib (Agg, its fonts, a first drawing) in a daemon thread, so the
    report drawn at the end of a job does not wait for it: about 1 s of every extract's wall time
    (cProfile of a 1M-comment extract: importing 0.8 s, the first figure's layout and fonts 0.4 s),
    spent while the driver waits for its jobs."""
    global _plotting
    if _plotting is None:
        _plotting = threading.Thread(target=_load_plotting, name="load-matplotlib", daemon=True)
        _plotting.start()


def _load_plotting() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 1))  # not through pyplot: no shared state with a report being drawn
    figure.subplots().set_title("warm-up")
    figure.tight_layout()
    FigureCanvasAgg(figure).draw()


def render_report(report: dict, png_url: str, html_url: str) -> None:
    """Draws the rule funnel, split sizes, top subreddits and length histograms."""
    if _plotting is not None:
        _plotting.join()  # loading it, if started (load_plotting_in_background)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    rules = [r for r in report["rules"] if r["out"]]
    ax = axes[0][0]
    ax.barh([r["rule"] for r in rules][::-1], [r["out"] for r in rules][::-1], color="#c0392b")
    ax.set_title(f"sessions dropped per rule (first rule that failed)\n"
                 f"{report['sessions']['candidates']:,} candidates -> {report['sessions']['kept']:,} kept")
    ax.set_xlabel("sessions")
    ax.set_xlim(0, 1.5 * max([r["out"] for r in rules] or [1]))  # room for the labels
    for y, r in enumerate(rules[::-1]):
        ax.text(r["out"], y, f" {r['out']:,} of {r['in']:,} ({100 * r['out'] / max(1, r['in']):.1f}%)", va="center", fontsize=8)

    ax = axes[0][1]
    subs = report["subreddits"][:15][::-1]
    ax.barh([s["subreddit"] for s in subs], [s["sessions"] for s in subs], color="#bdc3c7", label="candidates")
    ax.barh([s["subreddit"] for s in subs], [s["kept"] for s in subs], color="#27ae60", label="kept")
    splits = report["sessions"]["per_split"]
    ax.set_title("top subreddits (sessions)\nkept per split: " + ", ".join(f"{k} {splits.get(k, 0):,}" for k in SPLITS))
    ax.legend(loc="lower right")

    for ax, key, title in ((axes[1][0], "turns_histogram", "kept sessions by turns"),
                           (axes[1][1], "words_histogram", "kept sessions by words (all turns)")):
        # Bins in order of their lower edge (a report read back from JSON has its keys sorted as text).
        hist = dict(sorted(report[key].items(), key=lambda kv: int(kv[0].split("-")[0].rstrip("+"))))
        ax.bar(list(hist), list(hist.values()), color="#2980b9")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45)
    c = report["comments"]
    fig.suptitle(f"Extraction report: {c['comments']:,} comments, {c['used_in_sessions']:,} used in kept sessions", fontsize=13)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    png = buffer.getvalue()
    storage.write_bytes_atomic(png_url, png)
    storage.write_bytes_atomic(html_url, _html(report, png).encode())


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(f'{v:,}' if isinstance(v, int) else str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _settings_text(settings: dict) -> str:
    if not settings:
        return ""
    if not settings.get("on", True):
        return "off"
    return ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in settings.items() if k != "on") or "on"


def _near_html(near: dict, what: str) -> str:
    """The report's section on one near-duplicate rule's clusters (``what``: replies or sessions)."""
    sizes = sorted(near["sizes"].items(), key=lambda kv: int(kv[0].split("-")[0].rstrip("+")))
    clusters = "".join(
        f"<h3>{e['size']:,} {what}; kept {html.escape(e['kept'])}</h3><ol><li><b>kept:</b> {html.escape(e['kept_text'])}</li>"
        + "".join(f"<li>{html.escape(d['session_id'])}: {html.escape(d['text'])}</li>" for d in e["dropped"]) + "</ol>"
        for e in near["examples"])
    return (f"<p>{near['clusters']:,} clusters of near-duplicate {what} (the earliest session of each kept; "
            f"rejects name it in <code>duplicate_of</code>)</p>{_table([[k, v] for k, v in sizes], [f'{what} in the cluster', 'clusters'])}"
            f"<p>The largest clusters (texts shortened):</p>{clusters or '<p>none</p>'}")


def _html(report: dict, png: bytes) -> str:
    c = report["comments"]
    accounting = [["repeated comment id (one row per id kept)", c.get("duplicate_ids", 0)],
                  ["used in kept sessions", c["used_in_sessions"]]]
    accounting += [[f"cut by turn rule: {k}", v] for k, v in c["cut_by_turn_rule"].items()]
    accounting += [[f"only in sessions dropped by: {k}", v] for k, v in c["only_in_rejected_sessions"].items()]
    accounting += [["in no session (beyond max_turns of every chain)", c["not_in_any_session"]], ["total", c["comments"]]]
    if c.get("parent_cycles"):
        accounting.append(["of these, on a cycle of parent links (parent link cut)", c["parent_cycles"]])
    run = report.get("run", {})
    ingest = report.get("ingest", {})
    rules = [[r["rule"], r["in"], r["out"], f"{r.get('percent', 0):.2f}%", _settings_text(r.get("settings", {}))]
             for r in report["rules"]]
    turn_rules = [[r["rule"], r["comments_cut"], _settings_text(r["settings"])] for r in report.get("turn_rules", [])]
    examples = []
    for rule, sessions in report.get("examples", {}).items():
        deciding = report.get("example_fields", {}).get(rule, [None] * len(sessions))
        items = "".join("<li>" + (f"<i>[{html.escape(field)}]</i> " if field else "")
                        + " <b>&rarr;</b> ".join(html.escape(t) for t in turns) + "</li>" for turns, field in zip(sessions, deciding))
        examples.append(f"<h3>{html.escape(rule)}</h3><ol>{items}</ol>")
    inputs = [[i["file"], i["kind"], i["status"], i["lines"], i["rows"], i["rejects"]] for i in ingest.get("inputs", [])]
    rejects = [[k, v] for k, v in sorted(ingest.get("rejects_by_reason", {}).items())]
    near = report.get("near_duplicates")
    near_html = "<p>off</p>"
    if near is not None:
        near_html = "".join(_near_html(summary, what) for summary, what in
                            ((near, "replies"), (near.get("sessions"), "sessions")) if summary is not None)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Extraction report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
td:last-child{{text-align:left}}li{{margin:.3em 0;font-size:90%}}</style></head>
<body><h1>Extraction report</h1>
<p>input: {html.escape(str(report.get('input')))}; run {html.escape(str(run.get('date_utc', '?')))} UTC with
reddit-pretrain {html.escape(str(run.get('code_version', '?')))}; {report.get('seconds', 0):.1f} s</p>
<img src="data:image/png;base64,{base64.b64encode(png).decode()}" style="max-width:100%">
<h2>Rules (in order; a session is counted under the first rule it failed)</h2>
{_table(rules, ['rule', 'sessions in', 'dropped', 'dropped %', 'settings'])}
<h2>Turn rules (a comment that fails one cuts the chain where it stands)</h2>
{_table(turn_rules, ['rule', 'comments cut', 'settings'])}
<h2>Sessions per split</h2>{_table([[k, v] for k, v in sorted(report['sessions']['per_split'].items())], ['split', 'sessions'])}
<h2>Every comment accounted for</h2>{_table(accounting, ['where', 'comments'])}
<h2>Privacy: PII masked in the stored texts</h2>{_table([[k, v] for k, v in c.get('pii_masked', {}).items()], ['kind', 'matches'])}
<h2>Near duplicates</h2>{near_html}
<h2>Examples of rejected sessions (the first {EXAMPLES_PER_RULE} per rule; turns shortened)</h2>
{''.join(examples) or '<p>none</p>'}
<h2>Ingest: the dumps read</h2>{_table(inputs, ['file', 'kind', 'status', 'lines', 'rows', 'lines set aside'])}
<h2>Ingest: lines set aside, by reason</h2>{_table(rejects, ['reason', 'lines']) if rejects else '<p>none</p>'}
<h2>Top subreddits</h2>{_table([[s['subreddit'], s['sessions'], s['kept']] for s in report['subreddits']], ['subreddit', 'candidates', 'kept'])}
</body></html>"""
