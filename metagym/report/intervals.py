"""How the paired rule compares with the unpaired one over the report's comparisons."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from metagym.report.verdicts import CONTRADICTED, SUPPORTED


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _width_medians(widths: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Of (paired, unpaired) half-widths: how many, both medians and the median of the ratios."""
    return {
        "n_comparisons": len(widths),
        "median_ci95": _median([h for h, _ in widths]),
        "median_ci95_unpaired": _median([u for _, u in widths]),
        "median_ratio": _median([h / u for h, u in widths if u > 0]),
    }


def interval_summary(claims: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How the paired rule compares with the unpaired one over ``claims``: the median paired and
    unpaired half-widths over the comparisons that have both (their ratio, and the median of
    the per-comparison ratios), how many comparisons paired, and how many claims and (claim,
    domain) pairs each rule decides (supported or contradicted). ``by_claim_domain``: the same
    medians per (claim, domain), which say where pairing removes a shared effect and where not."""
    widths = {}  # (claim, domain) -> [(paired, unpaired)], in the claims' order
    for claim in claims:
        for c in claim["comparisons"]:
            if c["ci95"] is not None and c["ci95_unpaired"] is not None:
                widths.setdefault((claim["id"], c["domain"]), []).append(
                    (c["ci95"], c["ci95_unpaired"])
                )
    overall = _width_medians([w for ws in widths.values() for w in ws])
    paired_median, unpaired_median = overall["median_ci95"], overall["median_ci95_unpaired"]
    decided = {}
    for key, name in (("verdict", "paired"), ("verdict_unpaired", "unpaired")):
        decided[name] = {
            "claims": sum(c[key] in (SUPPORTED, CONTRADICTED) for c in claims),
            "claim_domains": sum(
                d[key] in (SUPPORTED, CONTRADICTED) for c in claims for d in c["domains"].values()
            ),
            "comparisons": sum(
                x[key] in (SUPPORTED, CONTRADICTED) for c in claims for x in c["comparisons"]
            ),
        }
    return {
        **overall,
        "n_paired": sum(c["paired"] for claim in claims for c in claim["comparisons"]),
        "ratio_of_medians": paired_median / unpaired_median
        if paired_median is not None and unpaired_median
        else None,
        "n_claims": len(claims),
        "n_claim_domains": sum(len(c["domains"]) for c in claims),
        "decided": decided,
        "by_claim_domain": [
            {"claim": claim_id, "domain": domain, **_width_medians(ws)}
            for (claim_id, domain), ws in widths.items()
        ],
    }
