"""The extraction report as a picture (PNG) and a small static HTML page a person can open."""

from __future__ import annotations

import base64
import html
import io

from extraction import storage


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
        ax.text(r["out"], y, f" {r['out']:,} of {r['in']:,}", va="center", fontsize=8)

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


def _html(report: dict, png: bytes) -> str:
    c = report["comments"]
    accounting = [["repeated comment id (one row per id kept)", c.get("duplicate_ids", 0)],
                  ["used in kept sessions", c["used_in_sessions"]]]
    accounting += [[f"cut by turn rule: {k}", v] for k, v in c["cut_by_turn_rule"].items()]
    accounting += [[f"only in sessions dropped by: {k}", v] for k, v in c["only_in_rejected_sessions"].items()]
    accounting += [["in no session (beyond max_turns of every chain)", c["not_in_any_session"]], ["total", c["comments"]]]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Extraction report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}td:first-child,th:first-child{{text-align:left}}</style></head>
<body><h1>Extraction report</h1><p>input: {html.escape(str(report.get('input')))}; {report.get('seconds', 0):.1f} s</p>
<img src="data:image/png;base64,{base64.b64encode(png).decode()}" style="max-width:100%">
<h2>Rules (in order; a session is counted under the first rule it failed)</h2>
{_table([[r['rule'], r['in'], r['out']] for r in report['rules']], ['rule', 'in', 'dropped'])}
<h2>Sessions per split</h2>{_table([[k, v] for k, v in sorted(report['sessions']['per_split'].items())], ['split', 'sessions'])}
<h2>Every comment accounted for</h2>{_table(accounting, ['where', 'comments'])}
<h2>Top subreddits</h2>{_table([[s['subreddit'], s['sessions'], s['kept']] for s in report['subreddits']], ['subreddit', 'candidates', 'kept'])}
</body></html>"""
