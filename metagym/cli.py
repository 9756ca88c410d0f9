"""The ``metagym`` command (also ``python -m metagym``).

    metagym list                                   domains, learners, splits, profiles, environments
    metagym run DOMAIN [--profile P] [--learners a,b] [--out DIR] [--resume] [--jobs N] ...
    metagym plot DIR                               redraw a run's plots from its files
    metagym evaluate RUN [--eval-tasks N] ...      score a finished run again, without training
    metagym aggregate RUN... --out DIR             results over seeds
    metagym report --profile quick --out DIR       the trade-off report (docs/report.md)

``metagym run DOMAIN --help`` lists the domain's flags: the run options below and one flag per
field of the domain's profile. Every error the library raises for bad input, bad data or a
diverged run ends the command with one line on stderr and exit status 2 (``--debug`` shows the
traceback).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from metagym import domains
from metagym.domains.base import Domain
from metagym.domains.profile import add_profile_flags, profile_overrides

#: What the library raises for bad input, bad data, diverged training and file errors.
EXPECTED_ERRORS = (ValueError, TypeError, OSError, RuntimeError, KeyError)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit status 2), like metagym's own:
    argparse's default prints the whole usage block first."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _out(text: str) -> Path:
    """``--out``; an empty one (which would write into the current folder) is refused."""
    if not str(text).strip():
        raise ValueError("--out is empty: give the folder to write (it is created)")
    return Path(text)


def _split_names(text: str | None) -> list[str] | None:
    """Comma-separated names; an empty part (``a,,b``) or a name given twice is refused."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        return []
    if not all(parts):
        raise ValueError(f"{text!r} has an empty name (two commas in a row, or one at an end)")
    twice = sorted({p for p in parts if parts.count(p) > 1})
    if twice:
        raise ValueError(f"{text!r} names {', '.join(twice)} twice")
    return parts


def add_run_parser(commands: argparse._SubParsersAction, domain: Domain) -> None:
    """``metagym run <domain>`` with the run options and the domain's profile flags."""
    parser = commands.add_parser(
        domain.name,
        help=domain.summary,
        description=f"{domain.summary}.\n\nLearners: "
        + ", ".join(f"{n} ({r.family})" for n, r in domain.recipes.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--learners",
        default=None,
        help="comma-separated learners (default: the profile's): " + ", ".join(domain.recipes),
    )
    parser.add_argument(
        "--profile",
        default=domain.default_profile,
        choices=list(domain.profiles),
        help=f"preset of the settings below (default {domain.default_profile})",
    )
    parser.add_argument(
        "--out", default=f"runs/{domain.name}", help="output directory (default: runs/DOMAIN)"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the run in --out (else it is refused)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of tasks and initialization")
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="parallel learner processes, slowest first (0: one per core on CPU, 1 on CUDA)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads per process (0: cores / jobs)"
    )
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda[:N]")
    parser.add_argument(
        "--data-root",
        default=None,
        help="folder of the data sets (Omniglot npz files; else $METAGYM_DATA, else the cache)",
    )
    parser.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard")
    parser.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep every checkpoint (runs/<learner>/checkpoints) for metagym evaluate --checkpoints",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="hide progress bars (they are off anyway when stderr is not a terminal)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    add_profile_flags(parser, domain.profile_class, domain.profile(domain.default_profile))
    parser.set_defaults(handler=run_command, domain_name=domain.name)


@functools.cache
def add_evaluate_parser(commands: argparse._SubParsersAction) -> None:
    """``metagym evaluate RUN``: re-score a finished run's learners (metagym.rescore)."""
    parser = commands.add_parser(
        "evaluate",
        help="score a finished run's learners again (more tasks, steps, shifts), no training",
        description="Score the saved learners of RUN again, on the run's own task stream: the "
        "first tasks of each split are the run's, so --eval-tasks extends them. New records are "
        "appended to runs/<learner>/scores.csv.gz, those the run had are checked bit for bit; "
        "the rows, results and plots are recomputed.",
    )
    parser.add_argument("run", help="a metagym run --out folder")
    parser.add_argument("--learners", default=None, help="comma-separated (default: all)")
    parser.add_argument("--splits", default=None, help="comma-separated (default: the run's)")
    parser.add_argument("--eval-tasks", type=int, default=None, help="tasks per split")
    parser.add_argument("--steps", default=None, help="comma-separated adaptation step counts")
    parser.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="KIND=LEVEL[,LEVEL]",
        help="add graded shift levels, e.g. scale=0.5 (Omniglot: shear, scale); repeatable",
    )
    parser.add_argument(
        "--checkpoints",
        action="store_true",
        help="score the kept checkpoints of one learner (metagym run --keep-checkpoints)",
    )
    parser.add_argument("--data-root", default=None, help="folder of data sets (Omniglot)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda[:N]")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: the run's own, with which its scores are reproduced bit for bit)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.set_defaults(handler=evaluate_command)


def _shifts(specs: Sequence[str]) -> dict[str, tuple[float, ...]]:
    out: dict[str, tuple[float, ...]] = {}
    for spec in specs:
        kind, sep, levels = spec.partition("=")
        try:
            values = tuple(float(v) for v in levels.split(",") if v.strip())
        except ValueError:
            values = ()
        if not sep or not kind.strip() or not values:
            raise ValueError(f"--shift {spec!r}: give KIND=LEVEL[,LEVEL], e.g. scale=0.5")
        out[kind.strip()] = out.get(kind.strip(), ()) + values
    return out


def _ints(flag: str, text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    parts = [v.strip() for v in text.split(",")]
    try:
        if not all(parts):
            raise ValueError
        return tuple(int(v) for v in parts)
    except ValueError:
        raise ValueError(f"{flag} {text!r}: give comma-separated integers") from None


def build_parser() -> argparse.ArgumentParser:
    """The command's parser (built once: it registers every domain's flags)."""
    parser = OneLineParser(
        prog="metagym",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="domains, learners, splits, profiles, environments")
    listing.set_defaults(handler=list_command)

    run = commands.add_parser("run", help="train and evaluate a domain's learners")
    run_domains = run.add_subparsers(dest="domain", required=True, metavar="DOMAIN")
    for name in domains.names():
        add_run_parser(run_domains, domains.get(name))

    plot = commands.add_parser("plot", help="redraw a run folder's plots from its files")
    plot.add_argument("out_dir", help="a run folder holding results.json")
    plot.add_argument(
        "--beside",
        nargs="+",
        default=[],
        metavar="RUN",
        help="run folders of the same environment whose checkpoint curves join "
        "sample_efficiency.png (metagym evaluate RUN --checkpoints first)",
    )
    plot.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    plot.set_defaults(handler=plot_command)

    add_evaluate_parser(commands)

    aggregate = commands.add_parser("aggregate", help="results of several seeds")
    aggregate.add_argument("runs", nargs="+", help="run folders (or results.json), one per seed")
    aggregate.add_argument("--out", required=True, help="output folder")
    aggregate.add_argument("--no-plots", action="store_true", help="write the results files only")
    aggregate.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    aggregate.set_defaults(handler=aggregate_command)

    report = commands.add_parser(
        "report",
        help="the trade-off report: the lecture's claims about the three families, measured",
        description="Run (or with --resume reuse) the experiments behind the six claims of the "
        "lecture's trade-off table on sinusoid, Omniglot and meta-RL, then write DIR/report.md, "
        "DIR/report.html (self-contained) and DIR/claims.json (docs/report.md).",
    )
    report.add_argument(
        "--profile",
        default="quick",
        choices=["tiny", "quick", "paper"],
        help="budgets: tiny (tests, seconds), quick (2 CPU cores, under 60 minutes), paper (GPU)",
    )
    report.add_argument("--out", required=True, help="output folder")
    report.add_argument("--resume", action="store_true", help="reuse the finished runs in --out")
    report.add_argument(
        "--data-root", default=None, help="folder of the data sets (Omniglot's npz files)"
    )
    report.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    report.add_argument(
        "--domains",
        default=None,
        help="comma-separated subset of sinusoid,omniglot,rl,metaworld (default: the first three; "
        "metaworld, Meta-World ML10, is opt-in; claims on a left-out domain are shown as not "
        "measured)",
    )
    report.add_argument(
        "--jobs", type=int, default=0, help="parallel learner processes (0: one per core on CPU)"
    )
    report.add_argument("--device", default="cpu", help="torch device: cpu or cuda[:N]")
    report.add_argument("--no-progress", action="store_true", help="hide progress bars")
    report.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    report.set_defaults(handler=report_command)
    return parser


# -- commands --------------------------------------------------------------------------------------
def list_command(args: argparse.Namespace) -> int:
    """Print the domains (learners with family, profiles, splits) and the environments."""
    import gymnasium as gym

    for name in domains.names():
        domain = domains.get(name)
        print(f"{name}: {domain.summary}")
        print(f"  profiles: {', '.join(domain.profiles)} (default {domain.default_profile})")
        width = max(len(n) for n in domain.recipes)
        for learner, recipe in domain.recipes.items():
            print(f"  {learner:<{width}}  {recipe.family:<14}  {recipe.summary}")
        print(f"  splits: {domain.splits}")
    import metagym_envs  # noqa: F401  (registers the metagym/* ids)

    ids = sorted(i for i in gym.registry if i.startswith("metagym/"))
    print("environments (metagym run rl --env ID, or any module:Class):")
    for env_id in ids:
        print(f"  {env_id}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from metagym.distributed import is_main_process
    from metagym.experiment import RunOptions, run

    domain = domains.get(args.domain_name)
    profile = domain.profile(args.profile)
    profile = profile.replace(**profile_overrides(args, profile))
    options = RunOptions(
        out_dir=_out(args.out),
        seed=args.seed,
        resume=args.resume,
        overwrite=args.overwrite,
        jobs=args.jobs,
        threads=args.threads,
        device=args.device,
        progress=False if args.no_progress else None,
        tensorboard=args.tensorboard,
        data_root=args.data_root,
        keep_checkpoints=args.keep_checkpoints,
    )
    start = time.perf_counter()
    outcome = run(domain, profile, _split_names(args.learners), options)
    if not is_main_process():
        return 0  # under torchrun, rank 0 writes and prints
    for subfolder, results in outcome.items():
        folder = options.out_dir / subfolder
        print((folder / "results.md").read_text())
        print(f"table: {folder / 'results.md'}")
        print("plots: " + ", ".join(results.get("plots", [])))
    print(f"wall time {time.perf_counter() - start:.0f} s")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    import torch

    from metagym.experiment import MAX_THREADS, check_device
    from metagym.rescore import RescoreOptions, rescore, run_threads

    if not 0 <= args.threads <= MAX_THREADS:
        raise ValueError(f"--threads must be between 0 and {MAX_THREADS}, got {args.threads}")
    # The run's own thread count by default: scores are bit-identical only with the same threads.
    torch.set_num_threads(args.threads or run_threads(Path(args.run)) or torch.get_num_threads())
    learners, splits = _split_names(args.learners), _split_names(args.splits)
    for flag, names in (("--learners", learners), ("--splits", splits)):
        if names == []:
            raise ValueError(f"{flag} is empty: name at least one (or leave it out for all)")
    options = RescoreOptions(
        learners=None if learners is None else tuple(learners),
        splits=None if splits is None else tuple(splits),
        eval_tasks=args.eval_tasks,
        steps=_ints("--steps", args.steps),
        shifts=_shifts(args.shift),
        checkpoints=args.checkpoints,
        device=check_device(args.device),
        data_root=args.data_root,
        progress=not args.no_progress and sys.stderr.isatty(),
        threads=args.threads or None,
    )
    start = time.perf_counter()
    for folder, checks in rescore(args.run, options).items():
        for learner, check in checks.items():
            check = check.get("check", check)
            print(
                f"{folder} {learner}: {check['added']} records added; of the "
                f"{check['checked']} the run had, {check['identical']} identical"
                + (
                    f" (largest difference {check['max_abs_difference']:.3g}"
                    + (
                        f"; {check['finiteness_changed']} turned finite or non-finite"
                        if check.get("finiteness_changed")
                        else ""
                    )
                    + ")"
                    if check["identical"] < check["checked"]
                    else ""
                )
                + ("; the run was scored by other metagym code" if check.get("other_code") else "")
            )
        if not args.checkpoints:
            print(f"table: {Path(folder) / 'results.md'}")
    print(f"wall time {time.perf_counter() - start:.0f} s")
    return 0


def plot_command(args: argparse.Namespace) -> int:
    from metagym.plots import redraw
    from metagym.plots.curve import check_same_environment, plot_sample_efficiency

    beside = getattr(args, "beside", [])
    check_same_environment(Path(args.out_dir), beside)
    for path in redraw(args.out_dir):
        print(path)
    if beside:
        path = plot_sample_efficiency(args.out_dir, beside)
        print(path if path else "no checkpoint curve with environment steps to draw")
    return 0


def aggregate_command(args: argparse.Namespace) -> int:
    from metagym.aggregate import aggregate

    aggregate(args.runs, _out(args.out))
    print((Path(args.out) / "results.md").read_text())
    if not args.no_plots:
        return plot_command(argparse.Namespace(out_dir=args.out))
    return 0


def report_command(args: argparse.Namespace) -> int:
    from metagym.report.build import parse_domains, parse_seeds, report

    seeds = parse_seeds(args.seeds)
    only = parse_domains(args.domains)
    _out(args.out)
    command = f"metagym report --profile {args.profile} --out {args.out}"
    command += " --resume" * args.resume + f" --seeds {args.seeds}" * (args.seeds != "0")
    command += f" --domains {args.domains}" * (args.domains is not None)
    result = report(
        args.profile,
        Path(args.out),
        resume=args.resume,
        data_root=args.data_root,
        seeds=seeds,
        only_domains=only,
        jobs=args.jobs,
        device=args.device,
        progress=False if args.no_progress else None,
        command=command,
    )
    for claim in result["claims"]:
        print(f"claim {claim['id']}: {claim['verdict']:<12}  {claim['title']}")
    out = Path(args.out)
    print(f"report: {out / 'report.md'}, {out / 'report.html'}, {out / 'claims.json'}")
    print(f"wall time {result['wall_s']:.0f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status (2 for an error, with one line on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted; finished learners are kept (continue with --resume)", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as error:
        if args.debug or "--debug" in argv:
            raise
        message = str(error) or type(error).__name__
        if isinstance(error, KeyError):
            message = f"missing {message}"
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
