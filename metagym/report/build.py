"""``metagym report``: run (or, with ``resume``, reuse) the report's experiments through the one
runner, then write ``report.md``, ``report.html`` and ``claims.json``.

Layout of ``DIR``: ``runs/<experiment>/seed-<s>/`` (the runner's output folder of each
experiment and seed, with its own ``results.json``, plots and learners), ``figures/claim-<n>.png``,
``report.md``, ``report.html``, ``claims.json`` and ``report.json`` (what defines the report).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from metagym import domains
from metagym.experiment import (
    RunOptions,
    check_device,
    check_out_dir,
    prepare,
    run,
    run_definition,
)
from metagym.report.claims import all_claims
from metagym.report.compute_matched import compute_matched
from metagym.report.evidence import REFERENCES, gather
from metagym.report.figures import draw
from metagym.report.intervals import interval_summary
from metagym.report.plan import DEFAULT_DOMAINS, DOMAIN_OF, Experiment, plan, registered_domains
from metagym.report.render import document, to_html, to_markdown
from metagym.results import read_json, read_results, write_json_atomic
from metagym.run_folder import FolderLock, check_folder

REPORT_DOMAINS = DEFAULT_DOMAINS
DEFINITION_FILE = "report.json"


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; a ValueError naming ``--seeds`` for anything else."""
    parts = [part.strip() for part in text.split(",")]
    try:
        if any(parts) and not all(parts):  # "0,,1": an empty entry is a typo, not a seed
            raise ValueError
        seeds = [int(part) for part in parts if part]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ValueError("--seeds needs at least one seed, e.g. --seeds 0 or --seeds 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds has a seed twice: {text!r}")
    for seed in seeds:
        if not 0 <= seed < 2**31:
            raise ValueError(f"--seeds: {seed} is not between 0 and {2**31 - 1}")
    return seeds


def parse_domains(text: str | None) -> tuple[str, ...]:
    """The report's domains (default sinusoid, omniglot, rl; ``metaworld`` is opt-in); a
    ValueError naming unknown ones."""
    if text is None:
        return REPORT_DOMAINS
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [n for n in names if n not in DOMAIN_OF]
    if unknown or not names:
        raise ValueError(
            f"--domains: unknown or empty {unknown or text!r}; accepted: {', '.join(DOMAIN_OF)}"
        )
    return names


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _machine(device: str) -> str:
    cores = os.cpu_count() or 1
    text = f"{platform.system()} {platform.machine()}, {cores} cores, torch {torch.__version__}"
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(device)}"
    return text + f", device {device}"


def _options(out: Path, seed: int, resume: bool, settings: dict[str, Any]) -> RunOptions:
    return RunOptions(out_dir=out, seed=seed, resume=resume, **settings)


def check_report_folder(out_dir: Path, definition: dict[str, Any], resume: bool) -> None:
    """Refuse a folder that holds a report unless resuming one with the same definition."""
    path = out_dir / DEFINITION_FILE
    if not path.is_file():
        if not resume and (out_dir / "runs").is_dir() and any((out_dir / "runs").iterdir()):
            raise ValueError(f"{out_dir} holds runs; give --resume to reuse them, or another --out")
        return
    if not resume:
        raise ValueError(
            f"{out_dir} already holds a report; give --resume to reuse its finished runs, or "
            "another --out"
        )
    old = read_json(path)
    changed = [k for k in ("profile", "domains") if old.get(k) != definition.get(k)]
    if changed:
        shown = "; ".join(f"{k}: {old.get(k)!r} -> {definition.get(k)!r}" for k in changed)
        raise ValueError(
            f"--resume: {out_dir} holds a report made with other settings ({shown}); use another "
            "--out"
        )


def validate(
    experiments: Sequence[Experiment], out_dir: Path, seeds: Sequence[int], resume: bool, settings
) -> list[tuple[Experiment, list[str], Any]]:
    """Check every experiment of every seed as the runner would, before any work: settings,
    learners, data, and (with ``resume``) that each folder can honestly be continued."""
    checked = []
    for experiment in experiments:
        domain = domains.get(experiment.domain)
        profile = experiment.profile()
        learners = experiment.learners()
        if not learners:
            raise ValueError(
                f"{experiment.name}: no learner of {experiment.families} is registered"
            )
        for seed in seeds:
            folder = out_dir / "runs" / experiment.name / f"seed-{seed}"
            _, planned = prepare(
                domain, profile, learners, _options(folder, seed, resume, settings)
            )
            try:
                for _, variant_dir, context in planned:
                    check_folder(
                        variant_dir, run_definition(context), resume=resume, overwrite=False
                    )
            finally:
                for _, _, context in planned:
                    context.close()
        checked.append((experiment, learners, profile))
    return checked


def _recorded_seconds(folder: Path) -> float:
    """Learner seconds (training + evaluation, summed) recorded in a run's results files."""
    total = 0.0
    for path in [folder / "results.json", *folder.glob("*/results.json")]:
        if path.is_file():
            for t in read_results(path)["config"].get("timings", {}).values():
                total += t.get("train_s", 0) + t.get("eval_s", 0)
    return total


def report(
    profile: str,
    out_dir: str | Path,
    *,
    resume: bool = False,
    data_root: str | None = None,
    seeds: Sequence[int] = (0,),
    only_domains: Sequence[str] = REPORT_DOMAINS,
    jobs: int = 0,
    device: str = "cpu",
    progress: bool | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Run the report (see the module docstring); return what ``claims.json`` holds."""
    start = time.perf_counter()
    out_dir = check_out_dir(out_dir)
    check_device(device)
    if data_root is not None and not Path(data_root).is_dir():
        raise ValueError(
            f"--data-root {data_root} does not exist; give the folder of the data sets"
        )
    experiments = plan(profile, tuple(only_domains))
    definition = {"profile": profile, "domains": list(only_domains)}
    settings = {"jobs": jobs, "device": device, "progress": progress, "data_root": data_root}
    check_report_folder(out_dir, definition, resume)
    checked = validate(experiments, out_dir, seeds, resume, settings)

    out_dir.mkdir(parents=True, exist_ok=True)
    parts, seed_dirs = [], {}
    with FolderLock(out_dir):
        write_json_atomic(definition, out_dir / DEFINITION_FILE)
        for experiment, learners, run_profile in checked:
            for seed in seeds:
                folder = out_dir / "runs" / experiment.name / f"seed-{seed}"
                began = time.perf_counter()
                print(
                    f"report: {experiment.name} seed {seed} ({', '.join(learners)})",
                    file=sys.stderr,
                )
                run(
                    experiment.domain,
                    run_profile,
                    learners,
                    _options(folder, seed, resume, settings),
                )
                seed_dirs.setdefault(experiment.name, []).append(folder)
                parts.append(
                    [experiment.name, experiment.domain, ", ".join(learners), seed,
                     round(time.perf_counter() - began, 1), round(_recorded_seconds(folder), 1)]
                )  # fmt: skip
        began = time.perf_counter()
        evidence = gather(experiments, seed_dirs, registered_domains(only_domains))
        claims = all_claims(evidence)
        compute = compute_matched(evidence)
        draw(claims, evidence, out_dir / "figures", compute=compute)
        intervals = interval_summary(claims)
        build_s = time.perf_counter() - began
        parts.append(["report", "", "evidence, claims, figures", "", round(build_s, 1), ""])
        meta = {
            "profile": profile,
            "seeds": list(seeds),
            "command": command or f"metagym report --profile {profile} --out {out_dir}",
            "commit": _commit(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": _machine(device),
            "wall_s": time.perf_counter() - start,
            "parts_columns": [
                "experiment", "domain", "learners", "seed", "wall s (this command)",
                "learner s recorded (train + eval, summed over learners)",
            ],
            "parts": parts,
            "conventions": conventions(registered_domains(only_domains)),
            "budget_note": budget_note(experiments),
            "notes": evidence.notes,
        }  # fmt: skip
        blocks = document(meta, claims, compute=compute, intervals=intervals)
        (out_dir / "report.md").write_text(to_markdown(blocks))
        (out_dir / "report.html").write_text(to_html(blocks, out_dir))
        result = {
            "schema_version": 1,
            **{k: v for k, v in meta.items() if k not in ("parts_columns", "conventions")},
            "parts": [dict(zip(meta["parts_columns"], p, strict=True)) for p in parts],
            "references": {
                d: REFERENCES[d] for d in registered_domains(only_domains) if d in REFERENCES
            },
            "intervals": intervals,
            "claims": claims,
            "compute_matched": compute,
        }
        write_json_atomic(result, out_dir / "claims.json")
    return result


def conventions(covered: Sequence[str]) -> str:
    refs = "; ".join(
        f"{d}: trivial = {REFERENCES[d]['trivial']['label']}, oracle = {REFERENCES[d]['oracle']['label']}"
        for d in covered
        if d in REFERENCES
    )
    return (
        "Scores are each run's mean over its evaluation tasks with the 95% interval (across "
        "tasks; across seeds when several seeds ran). Differences are paired: over the tasks "
        "both rows were scored on (one seed), or across seeds of the per-seed differences "
        "(several), beside the independent interval. A family's representative in a run is its "
        "learner with the best test score at the learner's reported steps. Normalized scores "
        f"are (score - trivial) / (oracle - trivial) on the same split, with {refs}."
    )


def budget_note(experiments: Sequence[Experiment]) -> str:
    lines = []
    for e in experiments:
        overrides = ", ".join(f"{k}={v}" for k, v in e.overrides.items())
        budget = ", ".join(f"{f} {n}" for f, n in e.budget.items())
        absent = f"; left out: {', '.join(e.absent())}" if e.absent() else ""
        lines.append(
            f"{e.name}: {e.domain} profile {e.base_profile} with {overrides}"
            + (f"; meta-updates per family: {budget}" if budget else "")
            + absent
        )
    return "Budgets: " + ". ".join(lines) + "."
