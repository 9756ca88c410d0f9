"""``report.md`` and a self-contained ``report.html`` (figures embedded as base64 PNG) from one
list of blocks, so both say the same thing."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metagym.report.verdicts import CLAIM_RULE, CLAIM_VERDICTS, COMPARISON_RULE, VERDICTS

Block = tuple[str, Any]


def fmt(x: Any, digits: int = 3) -> str:
    """A number in ``digits`` significant digits, or the text as is (an em dash for None)."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def interval(mean: Any, ci: Any) -> str:
    return "—" if mean is None else f"{fmt(mean)} ± {fmt(ci, 2)}"


def needed(c: dict[str, Any]) -> str:
    """What an inconclusive comparison would need to decide (80% power, paired test)."""
    if c.get("verdict") != "inconclusive":
        return ""
    parts = []
    if c.get("tasks_needed") is not None:
        parts.append(f"{c['tasks_needed']:,} tasks")
    if c.get("seeds_needed") is not None:
        parts.append(f"{c['seeds_needed']} seeds")
    return " / ".join(parts) or "—"


def _note(c: dict[str, Any]) -> str:
    pairing = c.get("pairing") or ""
    shown = [c["note"]] if c.get("note") else []
    if pairing.startswith("independent") and c.get("ci95") is not None:
        shown.append(pairing)
    return "; ".join(shown)


def per_domain(claim: dict[str, Any]) -> str:
    """``domain verdict (unpaired: ...)`` for each domain of a claim."""
    parts = []
    for domain, d in claim.get("domains", {}).items():
        text = f"{domain} {fmt(d['verdict'])}"
        if d["verdict_unpaired"] != d["verdict"]:
            text += f" (unpaired: {fmt(d['verdict_unpaired'])})"
        parts.append(text)
    return "; ".join(parts) or "—"


def comparison_table(comparisons: Sequence[dict[str, Any]]) -> Block:
    """The comparisons: d with its paired interval, the unpaired one, both verdicts, what an
    inconclusive one would need, and notes."""
    rows = [
        [
            c["domain"],
            c["group"],
            c["what"],
            interval(c["value"], c["ci95"]),
            "—" if c["ci95_unpaired"] is None else f"± {fmt(c['ci95_unpaired'], 2)}",
            fmt(c["verdict"]),
            fmt(c["verdict_unpaired"]),
            needed(c),
            _note(c),
        ]
        for c in comparisons
    ]
    header = ["domain", "run", "comparison", "d ± 95% (paired)", "unpaired", "verdict",
              "verdict (unpaired)", "to decide (80%)", "note"]  # fmt: skip
    return ("table", (header, rows))


def claim_blocks(claim: dict[str, Any]) -> list[Block]:
    """The blocks of one claim: statement, verdict, rule, numbers, figure, extra tables."""
    number = f"Claim {claim['id']}: " if claim.get("id") is not None else ""
    blocks: list[Block] = [
        ("h2", f"{number}{claim['title']}"),
        ("verdict", claim["verdict"]),
    ]
    if claim.get("statement"):
        blocks.append(("p", "Statement: " + claim["statement"] + "."))
    blocks.append(("p", "Rule: " + claim["rule"]))
    counts = claim["counts"]
    blocks.append(
        (
            "p",
            "Comparisons: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + " (paired); "
            f"verdict by the unpaired rule: {fmt(claim.get('verdict_unpaired'))}. "
            f"Per domain: {per_domain(claim)}.",
        )
    )
    if "parts" in claim:
        blocks.append(
            ("p", "Parts: " + ", ".join(f"{k} {v}" for k, v in claim["parts"].items()) + ".")
        )
    blocks.append(comparison_table(claim["comparisons"]))
    if claim.get("figure"):
        blocks.append(("img", claim["figure"]))
    if claim.get("levers"):
        blocks.append(
            (
                "table",
                (
                    ["run", "learner", "family", "test-time lever"],
                    [[x["group"], x["learner"], x["family"], x["test_time_lever"]]
                     for x in claim["levers"]],
                ),
            )
        )  # fmt: skip
    if claim.get("matrix"):
        matrix = claim["matrix"]
        families = list(dict.fromkeys(m["family"] for m in matrix))
        table = []
        for domain in dict.fromkeys(m["domain"] for m in matrix):
            cells = []
            for family in families:
                cell = next(m for m in matrix if m["domain"] == domain and m["family"] == family)
                if cell["status"] == "no recipe":
                    cells.append("does not apply (no recipe)")
                elif cell["status"] == "ran":
                    cells.append(
                        ", ".join(cell["ran"])
                        + "; best test "
                        + "; ".join(
                            f"{b['group']} {b['learner']} {interval(b['mean'], b['ci95'])}"
                            for b in cell["best"]
                        )
                    )
                else:
                    cells.append("registered, not run: " + ", ".join(cell["registered"]))
            table.append([domain, *cells])
        blocks.append(("table", (["domain", *families], table)))
    if claim.get("table"):
        blocks.append(
            (
                "table",
                (
                    ["run", "learner", "family", "meta-updates x batch", "meta-training s",
                     "s per meta-update ± 95%", "peak memory growth MiB", "peak MiB",
                     "normalized test", "normalized test per minute"],
                    [
                        [c["group"], c["learner"], c["family"],
                         f"{fmt(c['iterations'])} x {fmt(c['meta_batch'])}", fmt(c["train_s"]),
                         interval(c["per_update_s"], c["per_update_ci95"]), fmt(c["growth_mb"]),
                         fmt(c["peak_mb"]), fmt(c["normalized_test"]),
                         fmt(c["normalized_per_minute"])]
                        for c in claim["table"]
                    ],
                ),
            )
        )  # fmt: skip
        measures = {c.get("memory_measure") for c in claim["table"] if c.get("memory_measure")}
        if measures:
            blocks.append(
                (
                    "p",
                    "Peak memory: "
                    + "; ".join(sorted(measures))
                    + ", during meta-training; growth is the peak minus the size at the start "
                    "of the learner's meta-training (see metagym/memory.py for what it misses).",
                )
            )
    if claim.get("skipped"):
        blocks.append(
            (
                "p",
                "Skipped (no query loss in metrics.csv): "
                + "; ".join(
                    f"{x['group']} {x['learner']} ({x['family']})" for x in claim["skipped"]
                )
                + ".",
            )
        )
    return blocks


def interval_paragraph(summary: dict[str, Any]) -> str:
    """The paired rule against the unpaired one, in one paragraph."""
    paired, unpaired = summary["decided"]["paired"], summary["decided"]["unpaired"]
    return (
        f"Paired against unpaired intervals, over the {summary['n_comparisons']} comparisons "
        f"with both ({summary['n_paired']} paired on shared tasks or seeds): median half-width "
        f"{fmt(summary['median_ci95'])} against {fmt(summary['median_ci95_unpaired'])} "
        f"(ratio of medians {fmt(summary['ratio_of_medians'], 2)}, median of the ratios "
        f"{fmt(summary['median_ratio'], 2)}). Decided (supported or contradicted): "
        f"{paired['claims']} of {summary['n_claims']} claims and {paired['claim_domains']} of "
        f"{summary['n_claim_domains']} (claim, domain) pairs paired, against "
        f"{unpaired['claims']} and {unpaired['claim_domains']} unpaired."
    )


def interval_table(summary: dict[str, Any]) -> Block:
    """Per (claim, domain): comparisons with both intervals, median half-widths and ratio."""
    header = ["claim", "domain", "comparisons", "median h paired", "median h unpaired",
              "median ratio"]  # fmt: skip
    rows = [
        [str(e["claim"]), e["domain"], str(e["n_comparisons"]), fmt(e["median_ci95"]),
         fmt(e["median_ci95_unpaired"]), fmt(e["median_ratio"], 2)]
        for e in summary.get("by_claim_domain", [])
    ]  # fmt: skip
    return ("table", (header, rows))


def document(
    meta: dict[str, Any],
    claims: Sequence[dict[str, Any]],
    *,
    compute: dict[str, Any] | None = None,
    intervals: dict[str, Any] | None = None,
) -> list[Block]:
    """Every block of the report (``compute``: the compute-matched section; ``intervals``: the
    paired-against-unpaired summary)."""
    blocks: list[Block] = [("h1", f"metagym trade-off report ({meta['profile']} profile)")]
    blocks.append(
        (
            "p",
            f"Command: `{meta['command']}`. Commit {meta['commit']}, {meta['created']}, "
            f"{meta['machine']}. Seeds {meta['seeds']}. Wall time {meta['wall_s']:.0f} s.",
        )
    )
    blocks.append(("h2", "Verdicts"))
    blocks.append(
        (
            "table",
            (
                ["claim", "verdict", "verdict (unpaired)", "per domain",
                 "comparisons (supported / contradicted / inconclusive)"],
                [
                    [f"{c['id']}. {c['title']}", c["verdict"], c["verdict_unpaired"],
                     per_domain(c), " / ".join(str(c["counts"][v]) for v in VERDICTS)]
                    for c in claims
                ],
            ),
        )
    )  # fmt: skip
    blocks.append(("p", "How verdicts are computed. " + COMPARISON_RULE + " " + CLAIM_RULE))
    if intervals is not None:
        blocks.append(("p", interval_paragraph(intervals)))
        if intervals.get("by_claim_domain"):
            blocks.append(interval_table(intervals))
    blocks.append(("p", meta["conventions"]))
    for note in meta.get("notes", []):
        blocks.append(("p", "Note: " + note + "."))
    for claim in claims:
        blocks += claim_blocks(claim)
    if compute is not None:
        blocks += claim_blocks(compute)
    blocks.append(("h2", "What ran"))
    blocks.append(("table", (meta["parts_columns"], meta["parts"])))
    blocks.append(("p", meta["budget_note"]))
    return blocks


# -- markdown --------------------------------------------------------------------------------------
def _md_cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    out = []
    for kind, content in blocks:
        if kind == "h1":
            out.append(f"# {content}\n")
        elif kind == "h2":
            out.append(f"## {content}\n")
        elif kind == "p":
            out.append(f"{content}\n")
        elif kind == "verdict":
            out.append(f"**Verdict: {content or 'none (one seed: no interval)'}**\n")
        elif kind == "img":
            out.append(f"![{Path(content).stem}]({content})\n")
        elif kind == "table":
            header, rows = content
            lines = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines) + "\n")
    return "\n".join(out)


# -- html ------------------------------------------------------------------------------------------
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f5f5f5; padding: 0 0.2em; }
.verdict { display: inline-block; padding: 0.15em 0.6em; border-radius: 0.3em; color: white;
           font-weight: bold; }
.supported { background: #2e7d32; } .contradicted { background: #c62828; }
.inconclusive { background: #757575; } .mixed { background: #ef6c00; }
"""


def _inline(text: str) -> str:
    """Escape ``text``; spans between backticks become ``<code>``."""
    parts = html.escape(str(text)).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(blocks: Sequence[Block], base: Path) -> str:
    """The report as one HTML page; images under ``base`` are embedded as data URIs."""
    title = next((c for k, c in blocks if k == "h1"), "metagym report")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
    ]
    for kind, content in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{_inline(content)}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline(content)}</p>")
        elif kind == "verdict" and content is None:
            out.append("<p>Verdict: none (one seed: no interval)</p>")
        elif kind == "verdict":
            out.append(f'<p>Verdict: <span class="verdict {content}">{content}</span></p>')
        elif kind == "img":
            data = base64.b64encode((base / content).read_bytes()).decode("ascii")
            alt = html.escape(Path(content).stem)
            out.append(f'<p><img alt="{alt}" src="data:image/png;base64,{data}"></p>')
        elif kind == "table":
            header, rows = content
            out.append("<table><thead><tr>")
            out.append("".join(f"<th>{_inline(h)}</th>" for h in header))
            out.append("</tr></thead><tbody>")
            for row in rows:
                cells = []
                for cell in row:
                    text = _inline(cell)
                    if cell in CLAIM_VERDICTS:
                        text = f'<span class="verdict {cell}">{text}</span>'
                    cells.append(f"<td>{text}</td>")
                out.append("<tr>" + "".join(cells) + "</tr>")
            out.append("</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
