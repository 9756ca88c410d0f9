"""``report.md`` and a self-contained ``report.html`` (figures embedded as base64 PNG) from one
list of blocks, so both say the same thing."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metagym.report.claims import CLAIM_RULE, COMPARISON_RULE, VERDICTS

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


def claim_blocks(claim: dict[str, Any]) -> list[Block]:
    """The blocks of one claim: statement, verdict, rule, numbers, figure, extra tables."""
    blocks: list[Block] = [
        ("h2", f"Claim {claim['id']}: {claim['title']}"),
        ("verdict", claim["verdict"]),
        ("p", "Rule: " + claim["rule"]),
    ]
    counts = claim["counts"]
    blocks.append(("p", "Comparisons: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + "."))
    if "parts" in claim:
        blocks.append(
            ("p", "Parts: " + ", ".join(f"{k} {v}" for k, v in claim["parts"].items()) + ".")
        )
    rows = [
        [
            c["domain"],
            c["group"],
            c["what"],
            interval(c["value"], c["ci95"]),
            c["verdict"],
            c["note"],
        ]
        for c in claim["comparisons"]
    ]
    blocks.append(("table", (["domain", "run", "comparison", "d ± 95%", "verdict", "note"], rows)))
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
    return blocks


def document(meta: dict[str, Any], claims: Sequence[dict[str, Any]]) -> list[Block]:
    """Every block of the report."""
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
                ["claim", "verdict", "comparisons (supported / contradicted / inconclusive)"],
                [
                    [f"{c['id']}. {c['title']}", c["verdict"],
                     " / ".join(str(c["counts"][v]) for v in VERDICTS)]
                    for c in claims
                ],
            ),
        )
    )  # fmt: skip
    blocks.append(("p", "How verdicts are computed. " + COMPARISON_RULE + " " + CLAIM_RULE))
    blocks.append(("p", meta["conventions"]))
    for claim in claims:
        blocks += claim_blocks(claim)
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
            out.append(f"**Verdict: {content}**\n")
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
.inconclusive { background: #757575; }
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
                    if cell in VERDICTS:
                        text = f'<span class="verdict {cell}">{text}</span>'
                    cells.append(f"<td>{text}</td>")
                out.append("<tr>" + "".join(cells) + "</tr>")
            out.append("</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
