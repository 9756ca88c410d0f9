"""The one runner: every domain, every learner, through the one training loop and the one
evaluation routine.

``run(domain, profile, learners, options)`` checks everything first (settings, learner names,
data, each recipe's own check), then, for each of the domain's variants, trains and evaluates
every learner, in ``--jobs`` worker processes (slowest first) or in this one. Each learner writes
``runs/<name>/rows.json`` as it finishes, so an interrupted run keeps its finished learners and
``resume=True`` re-runs only what is missing (a learner's checkpoint lets its training continue).
The rows are merged into ``results.json`` / ``results.md``; the domain then writes its extras
and draws its plots from the files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

import metagym
from metagym import domains
from metagym.checkpoint import load_checkpoint
from metagym.distributed import is_main_process
from metagym.domains.base import Context, Domain, LearnerRecipe
from metagym.domains.profile import Profile
from metagym.evaluate import evaluate
from metagym.memory import PeakMemory
from metagym.paired import paired_markdown, paired_table
from metagym.provenance import code_fingerprint
from metagym.results import read_json, write_json_atomic, write_report
from metagym.run_folder import RUN_FILE, FolderLock, check_folder, differences, start_folder
from metagym.scores import SCORES_FILE, write_scores
from metagym.seeding import TASK_STREAM, build_seeded, make_generator
from metagym.train import TrainConfig, train

#: Largest sensible thread and job counts: beyond, it is a typo.
MAX_THREADS = 1024


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a run is carried out; none of these change its results.

    Attributes:
        out_dir: the output folder (created).
        seed: seed of weight initialization, training tasks and evaluation tasks.
        resume: keep finished learners and continue from checkpoints in ``out_dir``.
        overwrite: replace the run already in ``out_dir`` (without it, such a folder is refused).
        jobs: parallel learner processes (0: one per core on CPU, 1 on a GPU).
        threads: torch threads per process (0: cores / jobs).
        device: torch device of the learners.
        progress: progress bars (None: only when stderr is a terminal).
        tensorboard: also log training metrics to TensorBoard.
        data_root: folder of data sets (Omniglot).
        keep_checkpoints: keep every checkpoint of meta-training (``runs/<learner>/checkpoints``)
            for ``metagym evaluate --checkpoints``.
    """

    out_dir: Path
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    jobs: int = 1
    threads: int = 0
    device: str = "cpu"
    progress: bool | None = None
    tensorboard: bool = False
    data_root: str | None = None
    keep_checkpoints: bool = False

    def show_progress(self) -> bool:
        return sys.stderr.isatty() if self.progress is None else self.progress


def check_out_dir(out_dir: str | Path) -> Path:
    """Refuse an output path that exists and is not a directory (before any training)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file; give a directory (it is created)")
    return out_dir


def check_names(kind: str, requested: Sequence[str], accepted: Sequence[str]) -> list[str]:
    """Raise a ValueError naming the unknown entries of ``requested`` and the accepted values."""
    unknown = [name for name in requested if name not in accepted]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}; accepted: {', '.join(accepted)}")
    if not requested:
        raise ValueError(f"no {kind} given; accepted: {', '.join(accepted)}")
    return list(dict.fromkeys(requested))


def check_device(device: str) -> str:
    """Refuse a device torch cannot use here, with the accepted forms."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"--device {device!r} is not a torch device; use cpu or cuda[:N]"
        ) from None
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device}: metagym runs on cpu or cuda, not {parsed.type}")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device} but CUDA is not available; use --device cpu")
    return device


def _jobs_and_threads(options: RunOptions, n_learners: int) -> tuple[int, int]:
    cores = os.cpu_count() or 1
    if not 0 <= options.jobs <= MAX_THREADS or not 0 <= options.threads <= MAX_THREADS:
        raise ValueError(f"--jobs and --threads must be between 0 and {MAX_THREADS}")
    jobs = options.jobs or (1 if options.device != "cpu" else min(n_learners, cores))
    if not is_main_process() or os.environ.get("WORLD_SIZE", "1") != "1":
        jobs = 1  # under torchrun every rank runs the learners in turn
    threads = options.threads or max(1, cores // jobs)
    return max(1, min(jobs, n_learners)), threads


# -- one learner ---------------------------------------------------------------------------------
def run_learner(
    context: Context, recipe: LearnerRecipe, run_dir: Path, options: RunOptions
) -> dict[str, Any]:
    """Build, meta-train and evaluate one learner; write and return its ``rows.json`` record."""
    progress = options.show_progress()
    key = recipe.distribution_key(context)
    distribution = context.distribution(key)
    learner = build_seeded(lambda: recipe.build(context), context.seed).to(options.device)
    iterations = recipe.get("iterations", context) if learner.trainable else 0
    memory = PeakMemory(options.device).start()  # of meta-training
    start = time.perf_counter()
    if iterations:
        profile = context.profile
        config = TrainConfig(
            iterations,
            recipe.get("meta_batch", context),
            seed=context.seed,
            log_every=profile.log_every,
            checkpoint_every=profile.checkpoint_every,
            split=recipe.get("train_split", context),
            keep_checkpoints=options.keep_checkpoints,
        )
        train(
            learner,
            distribution,
            config,
            run_dir,
            resume=options.resume,
            tensorboard=options.tensorboard,
            progress=progress,
        )
    learner.after_training(distribution, make_generator(context.seed + 1))
    if iterations and is_main_process():
        learner.save(run_dir / "learner.pt")
    train_s = time.perf_counter() - start
    peak_memory = memory.stop()
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    steps = recipe.get("eval_steps", context)
    extra_fields = {"family": recipe.family, **recipe.get("row_fields", context)}
    for split in context.domain.eval_splits(context):
        tasks = context.eval_tasks(key, split)
        for row in evaluate(
            learner, distribution, split, tasks, steps, progress=progress, records=records
        ):
            rows.append({**row, **extra_fields})
    eval_s = time.perf_counter() - start
    extras = context.domain.after_learner(context, recipe, learner) if is_main_process() else {}
    if is_main_process():
        write_scores(run_dir / SCORES_FILE, records)
        for label, more in extras.pop("scores", {}).items():
            write_scores(run_dir / f"{label}_{SCORES_FILE}", more)
    record = {
        "learner": recipe.name,
        "family": recipe.family,
        "definition": run_definition(context),
        "config": learner.config(),
        "iterations": iterations,
        "train_split": recipe.get("train_split", context),
        "meta_batch": recipe.get("meta_batch", context),
        "report_steps": recipe.get("report_steps", context),
        "timings": {"train_s": round(train_s, 1), "eval_s": round(eval_s, 1)},
        "memory": peak_memory,
        "threads": torch.get_num_threads(),
        "code": code_fingerprint(),
        "rows": rows,
        "extras": extras,
    }
    if is_main_process():
        write_json_atomic(record, run_dir / "rows.json")
    if progress:
        print(f"{recipe.name}: train {train_s:.0f} s, eval {eval_s:.0f} s", file=sys.stderr)
    return record


def _exit_with_parent(parent: int) -> None:
    """Pool initializer: end this worker once the runner process is gone (a ``kill`` of
    ``metagym run`` would otherwise leave its workers training, orphaned). Checkpoints are
    atomic, so ``--resume`` continues from the last one."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker(job: dict[str, Any]) -> dict[str, Any]:
    """Run one learner in a worker process (spawned: everything arrives by pickling)."""
    torch.set_num_threads(job["threads"])
    domain = domains.get(job["domain"])
    context = Context(domain, job["profile"], job["variant"], tuple(job["learners"]), **job["ctx"])
    try:
        return run_learner(
            context, domain.recipes[job["name"]], Path(job["run_dir"]), job["options"]
        )
    finally:
        context.close()


# -- the run ---------------------------------------------------------------------------------------
def run_definition(context: Context) -> dict[str, Any]:
    """What defines a run's results (a resumed run must match it)."""
    return {
        "domain": context.domain.name,
        "variant": context.variant,
        "seed": context.seed,
        "profile": context.profile.as_dict(),
        "metagym_version": metagym.__version__,
        "task_stream": TASK_STREAM,
        **({"derived": context.domain.derived(context)} if context.domain.derived else {}),
    }


def definition_defaults(context: Context) -> dict[str, Any]:
    """What a definition written before a profile field existed is read with: the field's
    default (adding a field keeps the old behaviour at its default, so such folders resume)."""
    defaults: dict[str, Any] = {"profile": type(context.profile)().as_dict()}
    if context.domain.derived:  # folders from before ``derived`` were run as today's derive it
        defaults["derived"] = context.domain.derived(context)
    return defaults


def _finished(run_dir: Path, context: Context) -> dict[str, Any] | None:
    """The learner's ``rows.json`` record when it finished with this run's definition."""
    path = run_dir / "rows.json"
    if not path.is_file():
        return None
    record = read_json(path)
    if "definition" not in record or not isinstance(record.get("rows"), list):
        raise ValueError(
            f"{path} is damaged (no definition or rows); delete {run_dir} to run that learner again"
        )
    changed = differences(
        record["definition"], run_definition(context), defaults=definition_defaults(context)
    )
    if changed:
        raise ValueError(
            f"--resume: {run_dir.name} in {run_dir.parent.parent} was run with other settings "
            f"({'; '.join(changed[:6])}); use another --out, or --overwrite"
        )
    if record.get("iterations") and not (run_dir / "learner.pt").is_file():
        return None  # trained but not saved: rerun it (its last checkpoint is the end)
    return record


def run_variant(
    context: Context, names: Sequence[str], out_dir: Path, options: RunOptions
) -> dict[str, Any]:
    """Train and evaluate ``names`` in one variant; merge into ``results.json``; return it."""
    domain = context.domain
    out_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for name in names:
        record = _finished(out_dir / "runs" / name, context) if options.resume else None
        if record is not None:
            records[name] = record
        else:
            todo.append(name)
    # Threads from the whole run, not from what is left: a resumed learner then runs (and is
    # scored) with the threads of an uninterrupted run, and CPU scores are bit-identical only so.
    jobs, threads = _jobs_and_threads(options, max(len(names), 1))
    jobs = max(1, min(jobs, len(todo)))
    if todo and jobs == 1:
        torch.set_num_threads(threads)
        for name in todo:
            recipe = domain.recipes[name]
            records[name] = run_learner(context, recipe, out_dir / "runs" / name, options)
    elif todo:
        order = sorted(todo, key=lambda n: -float(domain.recipes[n].get("cost", context)))
        ctx_fields = {
            "seed": context.seed,
            "device": context.device,
            "data_root": context.data_root,
        }
        work = [
            {
                "domain": domain.name,
                "profile": context.profile,
                "variant": context.variant,
                "learners": list(context.learners),
                "ctx": ctx_fields,
                "name": name,
                "run_dir": str(out_dir / "runs" / name),
                "options": options,
                "threads": threads,
            }
            for name in order
        ]
        with ProcessPoolExecutor(
            jobs,
            mp_context=get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            for record in pool.map(_worker, work):
                records[record["learner"]] = record
    if not is_main_process():
        return {"rows": [r for n in names for r in records[n]["rows"]]}
    return merge(
        context, names, records, out_dir, jobs=jobs, threads=threads, resume=options.resume
    )


def merge(
    context: Context,
    names: Sequence[str],
    records: dict[str, dict[str, Any]],
    out_dir: Path,
    *,
    jobs: int,
    threads: int,
    resume: bool,
) -> dict[str, Any]:
    """Write ``results.json`` / ``results.md`` from the learners' records (with ``resume``, also
    those of earlier learners of the folder that this call did not name), the domain's extras and
    its plots; return the results as read back."""
    order = list(names)
    if resume:
        runs = out_dir / "runs"
        for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
            if run_dir.name not in records and run_dir.name in context.domain.recipes:
                record = _finished(run_dir, context)
                if record is not None:
                    records[run_dir.name] = record
                    order.append(run_dir.name)
    rows = [row for name in order for row in records[name]["rows"]]
    per_learner = {
        key: {name: records[name].get(key) for name in order}
        for key in ("config", "family", "iterations", "train_split", "meta_batch", "report_steps")
    }
    config = {
        **run_definition(context),
        "distribution": context.distribution().describe(),
        "learners": per_learner.pop("config"),
        **{key if key != "family" else "families": value for key, value in per_learner.items()},
        "timings": {name: records[name]["timings"] for name in order},
        "memory": {name: records[name].get("memory") for name in order},
        "jobs": jobs,
        "threads": threads,
        # where the data was read (not part of the definition: another machine has it
        # elsewhere); metagym evaluate reads it from here when not given --data-root
        "data_root": None if context.data_root is None else str(Path(context.data_root).resolve()),
    }
    title = context.domain.results_title(context)
    results = write_report(out_dir, rows, config=config, seed=context.seed, title=title)
    with (out_dir / "results.md").open("a") as f:
        f.write("Wall time per learner (seconds, training + evaluation): ")
        f.write(
            ", ".join(
                f"{n} {records[n]['timings']['train_s']} + {records[n]['timings']['eval_s']}"
                for n in order
            )
            + "\n"
        )
    table = paired_table([out_dir])
    if table:  # every learner against the best, task by task (runs/<learner>/scores.csv.gz)
        interval = "95% interval of the per-task paired differences to the best learner"
        write_json_atomic({"interval": interval, "rows": table}, out_dir / "paired.json")
        with (out_dir / "results.md").open("a") as f:
            f.write("\n" + paired_markdown(table))
    extras = {name: records[name].get("extras", {}) for name in order}
    context.domain.after_run(context, out_dir, results, extras)
    return results


def prepare(
    domain: Domain, profile: Profile, learners: Sequence[str] | None, options: RunOptions
) -> tuple[list[str], list[tuple[str, Path, Context]]]:
    """Validate everything before any work; return the learner names and, per variant, its
    output folder and context (with its task distributions built, so data errors surface now)."""
    profile.validate()
    requested = domain.learners_of(profile) if learners is None else list(learners)
    names = check_names("learner", requested, list(domain.recipes))
    out_dir = check_out_dir(options.out_dir)
    check_device(options.device)
    _jobs_and_threads(options, len(names))
    if isinstance(options.seed, bool) or not isinstance(options.seed, int):
        raise ValueError(f"--seed must be an integer, got {options.seed!r}")
    if not 0 <= options.seed < 2**31:
        raise ValueError(f"--seed must be between 0 and {2**31 - 1}, got {options.seed}")
    planned = []
    for subfolder, variant in domain.variants(profile):
        context = Context(
            domain,
            profile,
            dict(variant),
            tuple(names),
            seed=options.seed,
            device=options.device,
            data_root=options.data_root,
        )
        if domain.check is not None:
            domain.check(context)
        for name in names:
            recipe = domain.recipes[name]
            if recipe.check is not None:
                recipe.check(context)
            context.distribution(recipe.distribution_key(context))
            context.domain.eval_splits(context)
        planned.append((subfolder, out_dir / subfolder if subfolder else out_dir, context))
    return names, planned


def check_layout(out: Path, planned: Sequence[tuple[str, Path, Context]]) -> None:
    """Refuse an ``--out`` laid out for another domain: a run of its own where this one writes
    a folder per variant (Omniglot's ``5way-1shot/``), or variant folders where it writes one
    run; mixed, neither could be resumed, evaluated or aggregated."""
    variants = [sub for sub, _, _ in planned if sub]
    if variants and (out / RUN_FILE).is_file():
        other = read_json(out / RUN_FILE).get("domain")
        raise ValueError(
            f"--out {out} holds a {other} run; this one writes a folder per setting "
            f"({', '.join(variants[:3])}, ...) and would bury it: give another --out"
        )
    inside = sorted(p.parent.name for p in out.glob(f"*/{RUN_FILE}"))
    if not variants and inside:
        raise ValueError(
            f"--out {out} holds runs in subfolders ({', '.join(inside[:3])}); give another --out"
        )


def check_resumable(out_dir: Path, context: Context, names: Sequence[str]) -> None:
    """Before any work of a ``--resume``: every finished learner of the folder matches the run
    and has an intact ``learner.pt``, and every checkpoint a named learner would continue is
    intact (else one line now, not after hours of the other learners' training)."""
    runs = out_dir / "runs"
    for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
        if run_dir.name not in context.domain.recipes:
            continue
        if (run_dir / "rows.json").is_file() and _finished(run_dir, context) is not None:
            if (run_dir / "learner.pt").is_file():
                load_checkpoint(run_dir / "learner.pt")  # verified once, here
        elif run_dir.name in names and (run_dir / "checkpoint.pt").is_file():
            load_checkpoint(run_dir / "checkpoint.pt")


def run(
    domain: str | Domain,
    profile: Profile | str | None = None,
    learners: Sequence[str] | None = None,
    options: RunOptions | None = None,
    **option_fields: Any,
) -> dict[str, dict[str, Any]]:
    """Run an experiment; return ``{variant subfolder: results}`` (``""`` for a single one).

    ``profile`` is a :class:`Profile` or the name of one of the domain's presets (default: its
    default profile); ``options`` (or its fields as keywords) say where and how.
    """
    domain = domains.get(domain) if isinstance(domain, str) else domain
    if profile is None or isinstance(profile, str):
        profile = domain.profile(profile or domain.default_profile)
    options = options or RunOptions(**option_fields)
    names, planned = prepare(domain, profile, learners, options)
    main = is_main_process()
    out = {}
    try:
        with FolderLock(options.out_dir) if main else contextlib.nullcontext():
            if main:
                check_layout(Path(options.out_dir), planned)
            for _, out_dir, context in planned if main else ():
                definition = run_definition(context)
                check_folder(
                    out_dir,
                    definition,
                    resume=options.resume,
                    overwrite=options.overwrite,
                    defaults=definition_defaults(context),
                )
                if options.resume:
                    check_resumable(out_dir, context, names)
            for subfolder, out_dir, context in planned:
                if main:
                    start_folder(
                        out_dir, run_definition(context), names, overwrite=options.overwrite
                    )
                results = run_variant(context, names, out_dir, options)
                out[subfolder] = results
                if main:
                    for path in domain.redraw(out_dir):
                        results.setdefault("plots", []).append(str(path))
    finally:
        for _, _, context in planned:
            context.close()
    return out
