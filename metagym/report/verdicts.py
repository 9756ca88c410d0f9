"""The verdict rules of the report: one comparison's (an oriented difference and its interval),
a claim's (over its comparisons) and a claim's record with its verdicts overall and per domain.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
#: A claim some of whose comparisons support it and others contradict it: not decided either way.
MIXED = "mixed"
#: The verdicts of one comparison.
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)
#: The verdicts of a claim (overall or per domain): a comparison's, or mixed.
CLAIM_VERDICTS = (SUPPORTED, CONTRADICTED, MIXED, INCONCLUSIVE)
FAMILIES = ("gradient", "black-box", "non-parametric")
COMPARISON_RULE = (
    "Each comparison is a difference d oriented so that d > 0 is what the claim says, with its "
    "95% interval half-width h: supported when d - h > 0, contradicted when d + h < 0, else "
    "inconclusive. h is paired: rows scored on the same tasks are compared task by task (one "
    "seed), or seed by seed (several seeds: Student-t across seeds of the per-seed differences); "
    "the independent interval sqrt(h_a^2 + h_b^2) and its verdict are shown beside it."
)
CLAIM_RULE = (
    "The claim is supported when at least one comparison supports it and none contradicts it, "
    "contradicted when at least one contradicts it and none supports it, mixed when some "
    "support it and others contradict it, else inconclusive (none decided). Mixed is not decided "
    "either way."
)


def decide(d: float | None, h: float | None) -> str:
    """The verdict of one comparison (see the module docstring); None: inconclusive."""
    if d is None or h is None or not math.isfinite(d) or not math.isfinite(h):
        return INCONCLUSIVE
    if d - h > 0:
        return SUPPORTED
    if d + h < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def combine(verdicts: Iterable[str]) -> str:
    """A claim's verdict from its comparisons' verdicts (see the module docstring)."""
    verdicts = list(verdicts)
    supports, contradicts = SUPPORTED in verdicts, CONTRADICTED in verdicts
    if supports and not contradicts:
        return SUPPORTED
    if contradicts and not supports:
        return CONTRADICTED
    return MIXED if supports else INCONCLUSIVE


def both(first: str, second: str) -> str:
    """Two parts that must both hold: supported if both are, contradicted if either is, else
    mixed if either is, else inconclusive."""
    if CONTRADICTED in (first, second):
        return CONTRADICTED
    if first == second == SUPPORTED:
        return SUPPORTED
    return MIXED if MIXED in (first, second) else INCONCLUSIVE


def verdicts_of(comparisons: Sequence[dict[str, Any]], key: str = "verdict") -> list[str]:
    """The verdicts (``key``: ``"verdict"`` or ``"verdict_unpaired"``) of the comparisons that
    have one."""
    return [c[key] for c in comparisons if c[key] is not None]


def counts_of(verdicts: Sequence[str]) -> dict[str, int]:
    return {v: list(verdicts).count(v) for v in VERDICTS}


def by_domain(comparisons: Sequence[dict[str, Any]], rule=None) -> dict[str, dict[str, Any]]:
    """Per domain: ``{"verdict", "verdict_unpaired", "counts", "counts_unpaired"}`` by
    :func:`combine` over that domain's comparisons (``rule(comparisons, key) -> verdict``
    instead, where given); a domain whose comparisons carry no verdict gets None."""
    out = {}
    for domain in dict.fromkeys(c["domain"] for c in comparisons):
        mine = [c for c in comparisons if c["domain"] == domain]
        entry = {}
        for key, suffix in (("verdict", ""), ("verdict_unpaired", "_unpaired")):
            verdicts = verdicts_of(mine, key)
            if rule is not None:
                entry[key] = rule(mine, key)
            else:
                entry[key] = combine(verdicts) if verdicts else None
            entry["counts" + suffix] = counts_of(verdicts)
        out[domain] = entry
    return out


def claim_record(
    number: int | None,
    title: str,
    rule: str,
    comparisons: list[dict],
    *,
    verdict: str = "",
    verdict_unpaired: str = "",
    domains: dict | None = None,
    **extra,
) -> dict[str, Any]:
    verdicts = verdicts_of(comparisons)
    unpaired = verdicts_of(comparisons, "verdict_unpaired")
    return {
        "id": number,
        "title": title,
        "rule": rule,
        "verdict": verdict or (combine(verdicts) if verdicts or comparisons == [] else None),
        "verdict_unpaired": verdict_unpaired
        or (combine(unpaired) if unpaired or comparisons == [] else None),
        "counts": counts_of(verdicts),
        "counts_unpaired": counts_of(unpaired),
        "domains": by_domain(comparisons) if domains is None else domains,
        "comparisons": comparisons,
        **extra,
    }
