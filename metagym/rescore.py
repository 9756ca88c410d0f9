"""``metagym evaluate RUN``: score the saved learners of a finished run again, without training.

    metagym evaluate runs/omniglot --eval-tasks 2000 --splits test
    metagym evaluate runs/omniglot --shift scale=0.5 --splits ood-scale-0.5
    metagym evaluate runs/cheetah --learners maml --checkpoints --splits test

The learners are rebuilt from the run's definition (``run.json``) and loaded from their
``learner.pt`` (learners with nothing to meta-train are built again). The tasks are the run's own
evaluation stream (:func:`metagym.seeding.eval_task_stream`): the first tasks of each split are
the run's, so more tasks extend the old ones. Every requested task is scored; the records the run
already holds are compared with the new ones bit for bit (and kept), the others are appended to
``runs/<learner>/scores.csv.gz``; the rows, ``results.json``, ``results.md`` and the plots are
then recomputed from the records.

``--shift KIND=LEVEL[,LEVEL]`` adds graded shift levels (domains that have them: Omniglot's
``shear`` and ``scale``); the run's other splits keep their tasks. ``--checkpoints`` scores every
checkpoint kept by ``metagym run --keep-checkpoints`` (``runs/<learner>/checkpoints/``) into
``checkpoint_scores.csv.gz`` and writes ``curve.json`` / ``curve.png``: the score and the paired
gain over 0 steps against meta-training seconds.

A run this code cannot honour is refused, with one line, before any scoring: made with another
task stream (before per-task scores existed) or another metagym version, a learner whose saved
settings differ from what its recipe builds, a split or shift the domain does not have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import metagym
from metagym import domains
from metagym.checkpoint import load_checkpoint
from metagym.domains.base import Context
from metagym.domains.profile import Profile
from metagym.evaluate import summary_rows, task_records
from metagym.experiment import definition_defaults, merge, run_definition
from metagym.learners.base import Learner
from metagym.metrics_log import read_metrics
from metagym.provenance import code_fingerprint
from metagym.results import read_json, write_json_atomic
from metagym.run_folder import RUN_FILE, FolderLock, differences
from metagym.scores import (
    SCORES_FILE,
    merge_scores,
    read_scores,
    summarize,
    task_scores,
    write_scores,
)
from metagym.seeding import TASK_STREAM, build_seeded, eval_task_stream, make_generator

CHECKPOINT_SCORES = "checkpoint_scores.csv.gz"


@dataclasses.dataclass(frozen=True)
class RescoreOptions:
    """What to score again.

    Attributes:
        learners: learner names (None: every learner of the run).
        splits: splits (None: those the run evaluated, plus the added shift levels).
        eval_tasks: tasks per split (None: the run's ``eval_tasks``).
        steps: adaptation step counts (None: each recipe's evaluated steps).
        shifts: kind -> added levels (``{"scale": (0.5,)}``).
        checkpoints: score the kept checkpoints of the (single) learner instead.
        device: torch device of the learners.
        data_root: folder of data sets (Omniglot), as ``metagym run`` was given it.
        progress: progress bars.
        threads: torch threads (None: each learner's own, from its ``rows.json``, as it was
            scored: CPU scores are bit-identical only with the same threads).
    """

    learners: tuple[str, ...] | None = None
    splits: tuple[str, ...] | None = None
    eval_tasks: int | None = None
    steps: tuple[int, ...] | None = None
    shifts: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    checkpoints: bool = False
    device: str = "cpu"
    data_root: str | None = None
    progress: bool = False
    threads: int | None = None


def variant_folders(run: Path) -> list[Path]:
    """The run folder itself, or its variant subfolders (Omniglot's ``5way-1shot``, ...)."""
    if (run / RUN_FILE).is_file():
        return [run]
    found = sorted(p.parent for p in run.glob(f"*/{RUN_FILE}"))
    if not found:
        raise FileNotFoundError(f"{run} holds no run (no {RUN_FILE}); give a metagym run --out")
    return found


def run_threads(run: Path) -> int | None:
    """The torch threads each learner of ``run`` was trained and evaluated with (its first
    variant's ``results.json``), None when unknown: CPU scores are reproduced bit for bit only
    with the same number of threads (reductions are split differently)."""
    try:
        folder = variant_folders(run)[0]
        threads = read_json(folder / "results.json").get("config", {}).get("threads")
    except (OSError, ValueError):
        return None
    return threads if isinstance(threads, int) and threads > 0 else None


def profile_from(domain: domains.Domain, fields: dict[str, Any]) -> Profile:
    """The profile a definition recorded (lists back to tuples)."""
    known = {f.name for f in dataclasses.fields(domain.profile_class)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"the run's profile has fields this metagym does not know: {unknown}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return domain.profile_class(**values).validate()


def _with_shifts(domain: domains.Domain, profile: Profile, shifts: dict) -> Profile:
    if not shifts:
        return profile
    if not domain.shift_fields:
        raise ValueError(f"--shift: domain {domain.name} has no graded shifts to add levels to")
    changes = {}
    for kind, levels in shifts.items():
        field = domain.shift_fields.get(kind)
        if field is None:
            raise ValueError(
                f"--shift {kind}: {domain.name} has the graded shifts "
                f"{', '.join(domain.shift_fields)}"
            )
        old = tuple(getattr(profile, field))
        changes[field] = old + tuple(v for v in levels if v not in old)
    return profile.replace(**changes)


@dataclasses.dataclass
class Plan:
    """One variant folder's re-scoring, checked before any work."""

    folder: Path
    context: Context  # the run's own (building, loading, merging)
    scoring: Context  # the same with the added shift levels (the tasks)
    learners: list[str]
    splits: list[str]
    eval_tasks: int


def plan(folder: Path, options: RescoreOptions) -> Plan:
    """Check that ``folder``'s run can be re-scored as asked (a ValueError saying why not)."""
    definition = read_json(folder / RUN_FILE)
    if definition.get("task_stream") != TASK_STREAM:
        raise ValueError(
            f"{folder} was evaluated on another task stream ({definition.get('task_stream')!r}, "
            f"this metagym draws {TASK_STREAM!r}): its tasks cannot be extended; run it again"
        )
    if definition.get("metagym_version") != metagym.__version__:
        raise ValueError(
            f"{folder} was made by metagym {definition.get('metagym_version')}, this is "
            f"{metagym.__version__}: its learners may not load or score the same; run it again"
        )
    domain = domains.get(definition["domain"])
    profile = profile_from(domain, definition["profile"])
    finished = sorted(p.parent.name for p in (folder / "runs").glob("*/rows.json"))
    names = list(options.learners) if options.learners is not None else finished
    missing = [n for n in names if n not in finished]
    if missing:
        raise ValueError(
            f"{folder} has no finished learner {missing}; finished: {', '.join(finished)}"
        )
    if not names:
        raise ValueError(f"{folder} has no finished learner to score")
    results = read_json(folder / "results.json")
    recorded = results.get("config", {}).get("data_root")
    data_root = options.data_root
    if data_root is None and isinstance(recorded, str) and Path(recorded).is_dir():
        data_root = recorded  # the run's own, where it still exists
    common = dict(seed=definition["seed"], device=options.device, data_root=data_root)
    # the run's own learners define how it scored (RL: whole trials when a bandit learner ran)
    run_learners = tuple(results.get("config", {}).get("families") or finished)
    context = Context(domain, profile, definition["variant"], run_learners, **common)
    derived = run_definition(context).get("derived")
    if derived is not None and definition.get("derived", derived) != derived:
        raise ValueError(
            f"{folder} was scored with {definition['derived']}, its learners now give {derived}: "
            "it cannot be re-scored as it ran; run it again"
        )
    defaults = definition_defaults(context)
    for name in names:  # a learner left from a run of other settings is not this run's
        own = read_json(folder / "runs" / name / "rows.json").get("definition")
        changed = differences(own, definition, defaults=defaults) if own is not None else []
        if changed:
            raise ValueError(
                f"{folder / 'runs' / name} was run with other settings than {folder / RUN_FILE} "
                f"({'; '.join(changed[:4])}): it is not this run's learner; remove it or run again"
            )
    if domain.check is not None:
        domain.check(context)
    scoring_profile = _with_shifts(domain, profile, options.shifts)
    scoring = Context(domain, scoring_profile, definition["variant"], run_learners, **common)
    ran = list(dict.fromkeys(r["split"] for r in results["rows"]))
    added = [s for s in domain.eval_splits(scoring) if s not in domain.eval_splits(context)]
    splits = list(options.splits) if options.splits is not None else ran + added
    for name in names:
        distribution = scoring.distribution(domain.recipes[name].distribution_key(scoring))
        for split in splits:
            distribution.check_split(split)
    if options.eval_tasks is not None and not 1 <= options.eval_tasks <= 100_000:
        raise ValueError(f"--eval-tasks must be between 1 and 100000, got {options.eval_tasks}")
    if options.steps is not None and any(s < 0 for s in options.steps):
        raise ValueError(f"--steps must be >= 0, got {list(options.steps)}")
    if options.checkpoints:
        if len(names) != 1:
            raise ValueError("--checkpoints scores one learner's checkpoints: give --learners NAME")
        kept = sorted((folder / "runs" / names[0] / "checkpoints").glob("iter-*.pt"))
        if not kept:
            raise ValueError(
                f"{folder / 'runs' / names[0]} kept no checkpoints (train with "
                "metagym run --keep-checkpoints)"
            )
    n = options.eval_tasks or profile.eval_tasks
    return Plan(folder, context, scoring, names, splits, n)


def load_learner(context: Context, name: str, run_dir: Path) -> Learner:
    """The learner as the run left it: built under the run's seed, then its ``learner.pt`` (or,
    with nothing meta-trained, its after-training hook, as the runner ran it)."""
    recipe = context.domain.recipes[name]
    learner = build_seeded(lambda: recipe.build(context), context.seed).to(context.device)
    saved = run_dir / "learner.pt"
    if saved.is_file():
        learner.load(saved)
    elif learner.trainable and recipe.get("iterations", context):
        raise ValueError(f"{run_dir} has no learner.pt: the run did not save {name}")
    else:
        distribution = context.distribution(recipe.distribution_key(context))
        learner.after_training(distribution, make_generator(context.seed + 1))
    return learner


def _steps(context: Context, name: str, options: RescoreOptions) -> tuple[int, ...]:
    steps = context.domain.recipes[name].get("eval_steps", context)
    return tuple(options.steps) if options.steps is not None else tuple(steps)


def _score(
    p: Plan, name: str, learner: Learner, options: RescoreOptions, iteration: int | None = None
) -> list[dict[str, Any]]:
    recipe = p.context.domain.recipes[name]
    key = recipe.distribution_key(p.scoring)
    distribution = p.scoring.distribution(key)
    records = []
    for split in p.splits:
        tasks = eval_task_stream(distribution, split, p.context.seed, p.eval_tasks)
        records += task_records(
            learner,
            distribution,
            split,
            tasks,
            _steps(p.context, name, options),
            iteration=iteration,
            progress=options.progress,
        )
    return records


def _loaded(p: Plan, name: str) -> tuple[Learner, list[dict[str, Any]], dict[str, Any]]:
    """The learner, its per-task records and its ``rows.json`` record, all read (and so checked)
    before anything is scored or written: a damaged file of a later learner must not leave the
    earlier ones re-scored and ``results.json`` stale."""
    run_dir = p.folder / "runs" / name
    record = read_json(run_dir / "rows.json")
    path = run_dir / SCORES_FILE
    old = read_scores(path) if path.is_file() else []
    return load_learner(p.context, name, run_dir), old, record


def _set_threads(options: RescoreOptions, record: dict[str, Any]) -> None:
    """The learner's own threads (``rows.json``), unless threads were asked for."""
    threads = record.get("threads")
    if options.threads is None and isinstance(threads, int) and threads > 0:
        torch.set_num_threads(threads)


def rescore_learner(
    p: Plan, name: str, options: RescoreOptions, loaded: tuple
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Score ``name`` again: its merged per-task records, its new ``rows.json`` record and the
    comparison of the records the run already had (nothing written: :func:`rescore` writes).
    ``loaded``: what :func:`_loaded` read."""
    learner, old, record = loaded
    _set_threads(options, record)
    start = time.perf_counter()
    new = _score(p, name, learner, options)
    merged, check = merge_scores(old, new)
    recipe = p.context.domain.recipes[name]
    extra_fields = {"family": recipe.family, **recipe.get("row_fields", p.context)}
    distribution = p.scoring.distribution(recipe.distribution_key(p.scoring))
    final = [r for r in merged if r["iteration"] is None]
    record["rows"] = [{**row, **extra_fields} for row in summary_rows(learner, distribution, final)]
    check["seconds"] = round(time.perf_counter() - start, 1)
    # other code may score differently: the identical count above says whether it did
    check["other_code"] = record.get("code") not in (None, code_fingerprint())
    record.setdefault("rescored", []).append(
        {
            "splits": p.splits,
            "eval_tasks": p.eval_tasks,
            "steps": list(_steps(p.context, name, options)),
            "shifts": {k: list(v) for k, v in options.shifts.items()},
            **check,
        }
    )
    return merged, record, check


# -- checkpoints ---------------------------------------------------------------------------------
def training_seconds(metrics_csv: Path) -> dict[int, float]:
    """Iteration -> cumulative meta-training seconds, from ``metrics.csv``'s logged rates."""
    seconds, total, previous = {}, 0.0, 0
    for row in read_metrics(metrics_csv) if metrics_csv.is_file() else []:
        rate = row.get("charts/iterations_per_second")
        iteration = int(row["iteration"])
        if isinstance(rate, (int, float)) and rate > 0:
            total += (iteration - previous) / rate
        previous = iteration
        seconds[iteration] = round(total, 2)
    return seconds


def curve_points(
    records: Sequence[dict[str, Any]],
    seconds: dict[int, float],
    env_steps: dict[int, int | None] | None = None,
) -> list[dict]:
    """Per iteration, split and step count: the mean score with its interval, and for step
    counts above 0 the paired gain over 0 steps (per-task differences). ``env_steps``:
    iteration -> the environment steps of meta-training behind the checkpoint (RL)."""
    from metagym.scores import confidence_interval

    env_steps = env_steps or {}
    points = []
    for iteration in sorted({r["iteration"] for r in records}):
        mine = [r for r in records if r["iteration"] == iteration]
        for row in summarize(mine):
            point = {
                "iteration": iteration,
                "seconds": seconds.get(iteration),
                "train_env_steps": env_steps.get(iteration),
                **row,
            }
            s, split, metric = row["steps"], row["split"], row["metric"]
            if s and not row["diverged"] and "group" not in row:
                before = task_scores(mine, split, 0, metric)
                after = task_scores(mine, split, s, metric)
                shared = sorted(set(before) & set(after))
                if shared:
                    gains = [after[t] - before[t] for t in shared]
                    point["gain"] = sum(gains) / len(gains)
                    point["gain_ci95"] = confidence_interval(gains)
            points.append(point)
    return points


def rescore_checkpoints(p: Plan, options: RescoreOptions) -> dict[str, Any]:
    """Score every kept checkpoint of the plan's learner; write ``checkpoint_scores.csv.gz``,
    ``curve.json`` and ``curve.png``; return the curve."""
    name = p.learners[0]
    run_dir = p.folder / "runs" / name
    learner = load_learner(p.context, name, run_dir)
    path = run_dir / CHECKPOINT_SCORES
    records = read_scores(path) if path.is_file() else []
    check = {"added": 0, "checked": 0, "identical": 0, "max_abs_difference": 0.0}
    env_steps: dict[int, int | None] = {}
    for kept in sorted((run_dir / "checkpoints").glob("iter-*.pt")):
        state = load_checkpoint(kept, map_location=p.context.device)
        learner.load_checkpoint_state(state["learner"])
        iteration = int(state["iteration"])
        env_steps[iteration] = state["learner"].get("env_steps")
        records, step = merge_scores(records, _score(p, name, learner, options, iteration))
        for k in ("added", "checked", "identical"):
            check[k] += step[k]
        check["max_abs_difference"] = max(check["max_abs_difference"], step["max_abs_difference"])
        if options.progress:
            print(f"{name}: scored iteration {iteration}", flush=True)
    write_scores(path, records)
    curve = {
        "learner": name,
        "family": p.context.recipe(name).family,
        "report_steps": p.context.recipe(name).get("report_steps", p.context),
        "points": curve_points(records, training_seconds(run_dir / "metrics.csv"), env_steps),
        "check": check,
    }
    write_json_atomic(curve, run_dir / "curve.json")
    from metagym.plots.curve import plot_curve, plot_sample_efficiency

    plot_curve(curve, run_dir / "curve.png")
    plot_sample_efficiency(p.folder)
    return curve


# -- the command ---------------------------------------------------------------------------------
def rescore(run: str | Path, options: RescoreOptions) -> dict[str, Any]:
    """Re-score the run at ``run`` (see the module docstring); return, per variant folder and
    learner, how the records it already held compared (``identical`` of ``checked``)."""
    outcome: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        folders = variant_folders(Path(run))
        for folder in folders:  # locked before read: a run writing the folder is refused
            stack.enter_context(FolderLock(folder))
        plans = [plan(folder, options) for folder in folders]
        for p in plans:
            stack.callback(p.scoring.close)
            stack.callback(p.context.close)
        for p in plans:
            if options.checkpoints:
                outcome[str(p.folder)] = {p.learners[0]: rescore_checkpoints(p, options)}
                continue
            # every learner's files read (and checked) before any is scored
            loaded = {name: _loaded(p, name) for name in p.learners}
            scored = {n: rescore_learner(p, n, options, loaded.pop(n)) for n in p.learners}
            for name, (merged, record, _) in scored.items():
                write_scores(p.folder / "runs" / name / SCORES_FILE, merged)
                write_json_atomic(record, p.folder / "runs" / name / "rows.json")
            _refresh(p)
            outcome[str(p.folder)] = {name: check for name, (*_, check) in scored.items()}
    return outcome


def _refresh(p: Plan) -> None:
    """``results.json``, ``results.md`` and the plots again, from every learner's rows."""
    results = read_json(p.folder / "results.json")
    config = results.get("config", {})
    names = list(config.get("families") or {}) or sorted(
        d.parent.name for d in (p.folder / "runs").glob("*/rows.json")
    )
    records = {n: read_json(p.folder / "runs" / n / "rows.json") for n in names}
    merge(
        p.context,
        names,
        records,
        p.folder,
        jobs=config.get("jobs", 1),
        threads=config.get("threads", torch.get_num_threads()),
        resume=False,
    )
    p.context.domain.redraw(p.folder)
