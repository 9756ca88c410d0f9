"""One figure per claim, drawn from the claim's numbers and the evidence (matplotlib, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metagym.plots.common import hide_unused, panel_grid, plt, save_figure
from metagym.report.claims import ood_splits, sequence_pair
from metagym.report.comparisons import Evidence, learners_of, row_at, value

FAMILY_COLOURS = {
    "gradient": "tab:blue",
    "black-box": "tab:red",
    "non-parametric": "tab:green",
    "baseline": "tab:gray",
}


def _label_panel(ax, title: str, xlabel: str, ylabel: str) -> None:
    """A panel's title, axis labels, grid and legend."""
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)


def _finish(fig, axes, n_panels: int, path: Path) -> Path:
    """Blank the unused panels, lay the figure out and save it to ``path``."""
    hide_unused(axes, n_panels)
    fig.tight_layout()
    return save_figure(fig, path)


def _label(row: dict[str, Any]) -> str:
    return {"mse": "query MSE", "accuracy": "accuracy", "return": "return"}.get(
        row["metric"], row["metric"]
    )


def _empty(path: Path, message: str) -> Path:
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return save_figure(fig, path)


def figure_1(claim: dict, ev: Evidence, path: Path) -> Path:
    """Score against test-time steps: gradient learners as lines, the others as flat lines."""
    panels = []
    for group in ev.groups():
        main, sweep = ev.of(group), ev.of(group, "sweep")
        gradient = learners_of(main, "gradient")
        if not gradient:
            continue
        domain = main[0]["domain"]
        rows = sweep or main
        for split in ["test", *ood_splits(rows, ev.shifts.get(domain, {}))]:
            panels.append((group, split, main, sweep))
    if not panels:
        return _empty(path, "no gradient learner ran: nothing to draw")
    fig, axes = panel_grid(len(panels), 4.2, 3.2)
    for ax, (group, split, main, sweep) in zip(axes.flat, panels, strict=False):
        for learner in learners_of(main):
            family = next(r["family"] for r in main if r["learner"] == learner)
            source = [r for r in sweep if r["learner"] == learner] or main
            mine = [r for r in source if r["learner"] == learner and r["split"] == split]
            colour = FAMILY_COLOURS.get(family, "black")
            stepped = sorted((r for r in mine if r["steps"] is not None), key=lambda r: r["steps"])
            if family == "gradient" and stepped:
                good = [r for r in stepped if value(r) is not None]
                ax.errorbar(
                    [r["steps"] for r in good],
                    [r["mean"] for r in good],
                    yerr=[r["ci95"] for r in good],
                    marker="o",
                    ms=3,
                    capsize=2,
                    label=learner,
                    alpha=0.9,
                )
            elif family in ("black-box", "non-parametric"):
                row = row_at(mine, learner, split)
                if value(row) is not None:
                    ax.axhline(
                        row["mean"], color=colour, ls="--", lw=1, label=f"{learner} (no lever)"
                    )
        ax.set_title(f"{group}: {split}", fontsize=9)
        ax.set_xlabel("test-time gradient steps")
        ax.set_ylabel(_label(main[0]))
        if main[0]["metric"] == "mse":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    hide_unused(axes, len(panels))
    fig.tight_layout()
    return save_figure(fig, path)


def figure_2(claim: dict, ev: Evidence, path: Path) -> Path:
    """Degradation curves: normalized score against shift level, per run and kind of shift."""
    curves = [c for c in claim.get("curves", []) if c["normalized"] is not None]
    keys = list(dict.fromkeys((c["group"], c["kind"]) for c in curves if c["kind"] != "test"))
    if not keys:
        return _empty(
            path, "no run with shifted splits and both a gradient and a black-box learner"
        )
    fig, axes = panel_grid(len(keys), 4.0, 3.0)
    for ax, (group, kind) in zip(axes.flat, keys, strict=False):
        mine = [c for c in curves if c["group"] == group and c["kind"] in (kind, "test")]
        for learner in dict.fromkeys(c["learner"] for c in mine):
            points = sorted((c for c in mine if c["learner"] == learner), key=lambda c: c["level"])
            family = points[0]["family"]
            ax.errorbar(
                [c["level"] for c in points],
                [c["normalized"] for c in points],
                yerr=[c["ci95"] or 0 for c in points],
                marker="o",
                ms=3,
                capsize=2,
                color=FAMILY_COLOURS.get(family),
                label=f"{learner} ({family})",
            )
        levels = sorted({c["level"] for c in mine})
        ax.set_xticks(levels, ["test" if v == 0 else str(v) for v in levels])
        ax.axhline(0, color="k", lw=0.6)
        ax.axhline(1, color="k", lw=0.6, ls=":")
        _label_panel(
            ax,
            f"{group}: {kind}",
            "shift level (mild to strong)",
            "normalized score (0 trivial, 1 oracle)",
        )
    return _finish(fig, axes, len(keys), path)


def figure_3(claim: dict, ev: Evidence, path: Path) -> Path:
    """Test score against shots per learner (coloured by family); RL: return against experience."""
    curves = [c for c in claim.get("curves", []) if c["mean"] is not None]
    domains_with_shots = list(dict.fromkeys(c["domain"] for c in curves))
    rl_groups = [g for g in ev.groups() if ev.of(g)[0].get("scored_on")]
    n = len(domains_with_shots) + len(rl_groups)
    if not n:
        return _empty(path, "no run with several numbers of shots")
    fig, axes = panel_grid(n, 4.2, 3.2)
    flat = list(axes.flat)
    for ax, domain in zip(flat, domains_with_shots, strict=False):
        mine = [c for c in curves if c["domain"] == domain]
        for learner in dict.fromkeys(c["learner"] for c in mine):
            points = sorted((c for c in mine if c["learner"] == learner), key=lambda c: c["shots"])
            ax.errorbar(
                [c["shots"] for c in points],
                [c["mean"] for c in points],
                yerr=[c["ci95"] or 0 for c in points],
                marker="o",
                ms=3,
                capsize=2,
                color=FAMILY_COLOURS.get(points[0]["family"]),
                alpha=0.85,
                label=f"{learner}",
            )
        ax.set_xticks(sorted({c["shots"] for c in mine}))
        ax.set_xlabel("shots K")
        ax.set_ylabel(f"test {mine[0]['metric']}")
        if mine[0]["metric"] == "mse":
            ax.set_yscale("log")
        ax.set_title(f"{domain}: test score against K", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    for ax, group in zip(flat[len(domains_with_shots) :], rl_groups, strict=False):
        rows = [r for r in ev.of(group) if r["split"] == "test" and r.get("env_steps") is not None]
        for learner in learners_of(rows):
            if rows and next(r["family"] for r in rows if r["learner"] == learner) == "baseline":
                continue
            points = sorted(
                (r for r in rows if r["learner"] == learner and value(r) is not None),
                key=lambda r: r["env_steps"],
            )
            family = points[0]["family"] if points else "baseline"
            ax.errorbar(
                [r["env_steps"] for r in points],
                [r["mean"] for r in points],
                yerr=[r["ci95"] for r in points],
                marker="o",
                ms=3,
                capsize=2,
                color=FAMILY_COLOURS.get(family),
                label=learner,
            )
        ax.set_xlabel("environment steps of experience on the task")
        ax.set_ylabel(f"test {_label(rows[0]) if rows else 'return'}")
        ax.set_title(f"{group}: return against experience (not counted)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    hide_unused(axes, n)
    fig.tight_layout()
    return save_figure(fig, path)


def figure_4(claim: dict, ev: Evidence, path: Path) -> Path:
    """Which families ran on which domain, with their best test score."""
    matrix = claim.get("matrix", [])
    domains = list(dict.fromkeys(m["domain"] for m in matrix))
    families = list(dict.fromkeys(m["family"] for m in matrix))
    if not matrix:
        return _empty(path, "no domain covered")
    shade = {"ran": "#c8e6c9", "registered, not run": "#fff9c4", "no recipe": "#eeeeee"}
    fig, ax = plt.subplots(figsize=(1.9 * len(families) + 1.5, 0.9 * len(domains) + 1.0))
    for i, domain in enumerate(domains):
        for j, family in enumerate(families):
            cell = next(m for m in matrix if m["domain"] == domain and m["family"] == family)
            ax.add_patch(plt.Rectangle((j, i), 1, 1, color=shade[cell["status"]], ec="white"))
            text = cell["status"]
            if cell["best"]:
                best = max(cell["best"], key=lambda b: b["mean"] if b["mean"] is not None else 0)
                text = f"{best['learner']}\n{best['mean']:.3g} ± {best['ci95']:.2g}"
            elif cell["status"] == "no recipe":
                text = "does not apply\n(no recipe)"
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=7)
    ax.set_xlim(0, len(families))
    ax.set_ylim(len(domains), 0)
    ax.set_xticks([j + 0.5 for j in range(len(families))], families, fontsize=8)
    ax.set_yticks([i + 0.5 for i in range(len(domains))], domains, fontsize=8)
    ax.set_title("families per domain (best test score where run)", fontsize=9)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, path)


def figure_5(claim: dict, ev: Evidence, path: Path) -> Path:
    """Per primary run: time per meta-update and peak memory growth per learner."""
    table = [c for c in claim.get("table", []) if c.get("iterations")]
    groups = list(dict.fromkeys(c["group"] for c in table))
    if not groups:
        return _empty(path, "no meta-trained learner ran")
    fig, axes = plt.subplots(2, len(groups), figsize=(4.2 * len(groups), 6), squeeze=False)
    for j, group in enumerate(groups):
        mine = [c for c in table if c["group"] == group]
        names = [c["learner"] for c in mine]
        colours = [FAMILY_COLOURS.get(c["family"], "black") for c in mine]
        per_update = [c["per_update_s"] or 0 for c in mine]
        errors = [c["per_update_ci95"] or 0 for c in mine]
        ax = axes[0, j]
        ax.bar(names, per_update, yerr=errors, color=colours, capsize=2)
        ax.set_ylabel("seconds per meta-update")
        ax.set_title(group, fontsize=9)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
        ax = axes[1, j]
        ax.bar(names, [c["growth_mb"] or 0 for c in mine], color=colours)
        ax.set_ylabel("peak memory growth (MiB)")
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def figure_6(claim: dict, ev: Evidence, path: Path) -> Path:
    """Test score of the transformer and the recurrent black-box learner (LSTM, or RL^2's GRU),
    where both ran."""
    pairs = []
    for group in ev.groups():
        rows = ev.of(group)
        names = sequence_pair(ev, rows[0]["domain"]) if rows else (None, None)
        if None in names:
            continue
        found = {n: row_at(rows, n, "test") for n in names}
        if all(value(r) is not None for r in found.values()):
            pairs.append((group, found))
    if not pairs:
        reasons = "; ".join(f"{c['domain']}: {c['what']}" for c in claim["comparisons"])
        return _empty(path, f"not measured ({reasons})")
    fig, axes = panel_grid(len(pairs), 2.8, 3.0)
    for ax, (group, found) in zip(axes.flat, pairs, strict=False):
        names = list(found)
        ax.bar(
            names,
            [found[n]["mean"] for n in names],
            yerr=[found[n]["ci95"] for n in names],
            color=["tab:purple", "tab:red"],
            capsize=3,
        )
        ax.set_title(group, fontsize=9)
        ax.set_ylabel(f"test {found[names[0]]['metric']}")
    hide_unused(axes, len(pairs))
    fig.tight_layout()
    return save_figure(fig, path)


def figure_compute(section: dict, ev: Evidence, path: Path) -> Path:
    """Training query loss against cumulative meta-training seconds, per primary run: every
    learner that logs one (first seed), coloured by family, the compared representatives bold,
    and the equal-time point T of each comparison dotted."""
    groups = [g for g in ev.groups() if any(t["group"] == g and t["loss"] for t in ev.training)]
    if not groups:
        return _empty(path, "no learner logged a query loss on its training meta-batches")
    fig, axes = panel_grid(len(groups), 4.2, 3.2)
    for ax, group in zip(axes.flat, groups, strict=False):
        pairs = [p for p in section.get("pairs", []) if p["group"] == group]
        compared = {n for p in pairs for n in (p["gradient"], p["other"])}
        for curve in ev.training:
            if curve["group"] != group or curve["seed"] != 0 or not curve["loss"]:
                continue
            bold = curve["learner"] in compared
            ax.plot(
                curve["seconds"],
                curve["loss"],
                color=FAMILY_COLOURS.get(curve["family"], "black"),
                lw=1.8 if bold else 0.8,
                alpha=1.0 if bold else 0.45,
                label=f"{curve['learner']} ({curve['family']})",
            )
        for p in pairs:
            if p["seconds"]:
                ax.axvline(p["seconds"][0], color="k", ls=":", lw=0.8)
        if all(v > 0 for c in ev.training if c["group"] == group for v in c["loss"]):
            ax.set_yscale("log")
        _label_panel(
            ax,
            f"{group}: training query loss",
            "meta-training seconds",
            "query loss (training meta-batches)",
        )
    return _finish(fig, axes, len(groups), path)


FIGURES = (figure_1, figure_2, figure_3, figure_4, figure_5, figure_6)
COMPUTE_FIGURE = "compute-matched.png"


def draw(
    claims: list[dict], ev: Evidence, out_dir: Path, compute: dict | None = None
) -> list[Path]:
    """``claim-<n>.png`` for every claim (and ``compute-matched.png`` for the compute-matched
    section); returns the paths (also stored as ``claim["figure"]``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = [(claim, figure, f"claim-{claim['id']}.png")
             for claim, figure in zip(claims, FIGURES, strict=True)]  # fmt: skip
    if compute is not None:
        drawn.append((compute, figure_compute, COMPUTE_FIGURE))
    paths = []
    for section, figure, name in drawn:
        path = figure(section, ev, out_dir / name)
        section["figure"] = str(path.relative_to(out_dir.parent))
        paths.append(path)
    return paths
