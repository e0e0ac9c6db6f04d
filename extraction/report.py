"""The extraction report as a picture (PNG) and one self-contained HTML page a person can open,
and the parts of it read from outside the tasks' counts: each rule's settings and share dropped,
example rejected sessions, the ingest side (inputs, rejects by reason) and the run (date, code)."""

from __future__ import annotations

import base64
import html
import io
import os
import subprocess
import time

from extraction import storage

EXAMPLES_PER_RULE = 3
EXAMPLE_TURN_CHARS = 120


def code_version() -> str:
    """``<package version>+git.<short commit>`` of the running code (``unknown`` parts when the
    package is not installed or the code is not a git checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("reddit-pretrain")
    except PackageNotFoundError:
        package = "unknown"
    try:
        rev = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True, stderr=subprocess.DEVNULL,
                                      cwd=os.path.dirname(os.path.abspath(__file__))).strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "unknown"
    return f"{package}+git.{rev}"


def rule_settings(cfg) -> dict[str, dict]:
    """Per drop reason of the extract report: the settings that decide it (``on`` false when switched
    off). ``cfg`` is an ``ExtractConfig``."""
    from extraction.filters import RULES

    settings = {"min_turns": {"on": True, "chains.min_turns": cfg.chains.min_turns},
                "max_turns": {"on": True, "chains.max_turns": cfg.chains.max_turns,
                              "chains.long_chains": cfg.chains.long_chains}}
    for rule in RULES:
        values = {f"filters.{field}": getattr(cfg.filters, field) for field in rule.thresholds}
        settings[rule.name] = {"on": bool(getattr(cfg.filters, rule.name)), **values}
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


def rejected_examples(rejects_folder: str, per_rule: int = EXAMPLES_PER_RULE) -> dict[str, list[list[str]]]:
    """Up to ``per_rule`` rejected sessions per drop reason (turns cut to ``EXAMPLE_TURN_CHARS``),
    the first ones in file order: the same input gives the same examples. Reads the small
    ``drop_reason`` column of each file first and the turns only of files that hold a needed one."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    examples: dict[str, list[list[str]]] = {}
    fs, root = storage.filesystem(rejects_folder)
    if not fs.exists(root):
        return examples
    for path in sorted(p for p in fs.find(root) if p.endswith(".parquet")):
        with fs.open(path, "rb") as f:
            reasons = pq.read_table(f, columns=["drop_reason"]).column("drop_reason")
        wanted = [r for r in pc.unique(reasons).to_pylist() if len(examples.get(r, [])) < per_rule]
        if not wanted:
            continue
        with fs.open(path, "rb") as f:
            table = pq.read_table(f, columns=["drop_reason", "turns"])
        for reason in sorted(wanted):
            rows = table.filter(pc.equal(table.column("drop_reason"), reason)).slice(0, per_rule - len(examples.get(reason, [])))
            for turns in rows.column("turns").to_pylist():
                examples.setdefault(reason, []).append(
                    [t if len(t) <= EXAMPLE_TURN_CHARS else t[: EXAMPLE_TURN_CHARS - 1] + "…" for t in turns])
    return examples


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


def render_report(report: dict, png_url: str, html_url: str) -> None:
    """Draws the rule funnel, split sizes, top subreddits and length histograms."""
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
    for y, r in enumerate(rules[::-1]):
        ax.text(r["out"], y, f" {r['out']:,} of {r['in']:,} ({100 * r['out'] / max(1, r['in']):.1f}%)", va="center", fontsize=8)

    ax = axes[0][1]
    subs = report["subreddits"][:15][::-1]
    ax.barh([s["subreddit"] for s in subs], [s["sessions"] for s in subs], color="#bdc3c7", label="candidates")
    ax.barh([s["subreddit"] for s in subs], [s["kept"] for s in subs], color="#27ae60", label="kept")
    splits = report["sessions"]["per_split"]
    ax.set_title("top subreddits (sessions)\nkept per split: " + ", ".join(f"{k} {splits.get(k, 0):,}" for k in ("train", "valid", "test")))
    ax.legend(loc="lower right")

    for ax, key, title in ((axes[1][0], "turns_histogram", "kept sessions by turns"),
                           (axes[1][1], "words_histogram", "kept sessions by words (all turns)")):
        hist = report[key]
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


def _html(report: dict, png: bytes) -> str:
    c = report["comments"]
    accounting = [["repeated comment id (one row per id kept)", c.get("duplicate_ids", 0)],
                  ["used in kept sessions", c["used_in_sessions"]]]
    accounting += [[f"cut by turn rule: {k}", v] for k, v in c["cut_by_turn_rule"].items()]
    accounting += [[f"only in sessions dropped by: {k}", v] for k, v in c["only_in_rejected_sessions"].items()]
    accounting += [["in no session (beyond max_turns of every chain)", c["not_in_any_session"]], ["total", c["comments"]]]
    run = report.get("run", {})
    ingest = report.get("ingest", {})
    rules = [[r["rule"], r["in"], r["out"], f"{r.get('percent', 0):.2f}%", _settings_text(r.get("settings", {}))]
             for r in report["rules"]]
    turn_rules = [[r["rule"], r["comments_cut"], _settings_text(r["settings"])] for r in report.get("turn_rules", [])]
    examples = []
    for rule, sessions in report.get("examples", {}).items():
        items = "".join("<li>" + " <b>&rarr;</b> ".join(html.escape(t) for t in turns) + "</li>" for turns in sessions)
        examples.append(f"<h3>{html.escape(rule)}</h3><ol>{items}</ol>")
    inputs = [[i["file"], i["kind"], i["status"], i["lines"], i["rows"], i["rejects"]] for i in ingest.get("inputs", [])]
    rejects = [[k, v] for k, v in sorted(ingest.get("rejects_by_reason", {}).items())]
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
<h2>Examples of rejected sessions (the first {EXAMPLES_PER_RULE} per rule; turns shortened)</h2>
{''.join(examples) or '<p>none</p>'}
<h2>Ingest: the dumps read</h2>{_table(inputs, ['file', 'kind', 'status', 'lines', 'rows', 'lines set aside'])}
<h2>Ingest: lines set aside, by reason</h2>{_table(rejects, ['reason', 'lines']) if rejects else '<p>none</p>'}
<h2>Top subreddits</h2>{_table([[s['subreddit'], s['sessions'], s['kept']] for s in report['subreddits']], ['subreddit', 'candidates', 'kept'])}
</body></html>"""
