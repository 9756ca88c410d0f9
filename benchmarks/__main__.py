"""Meta-training throughput: the per-task loop against the batched path, side by side.

    python -m benchmarks                      # CPU, every case; writes bench-results.json
    python -m benchmarks --device cuda --out bench-results-cuda.json
    python -m benchmarks --cases "sinusoid maml 1-step" --no-memory

For each case the paths run interleaved in the same process (medians of many rounds, so a noisy
machine slows them alike), and the table gives steps per second, peak memory, the speed-up over
the per-task loop, how many times its floor (the plain forward and backward passes a MAML step
cannot avoid, counted: ``benchmarks/floors.py``) each step takes, its FLOPs and the share of the
machine's measured peak FLOP/s it reaches. Cases whose domain is missing are
skipped with a reason; ``benchmarks/bench_sampler.py`` (the RL sampler) is run when present.
It is a measurement, never a test (``make bench``).
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import os
import platform
import subprocess
import sys
import time
import traceback

import torch

from benchmarks.cases import missing_modules, registry
from benchmarks.floors import case_flops, peak_flops
from benchmarks.harness import (
    auto_verdict,
    cpu_memory_supported,
    format_table,
    format_verdicts,
    measure_peak_memory_here,
    measure_peak_memory_subprocess,
    summarize,
    time_interleaved,
    write_json,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared 2-core machine more threads made the "
        "batched path 30-60x slower through contention)",
    )
    parser.add_argument("--out", default="bench-results.json", help="JSON output file")
    parser.add_argument("--cases", default=None, help="comma-separated case names (default all)")
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory measurement")
    parser.add_argument(
        "--no-sampler", action="store_true", help="skip benchmarks/bench_sampler.py"
    )
    parser.add_argument("--memory", nargs=2, metavar=("CASE", "PATH"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def machine_info(device: torch.device, threads: int) -> dict:
    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo").read().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "torch_threads": threads,
        "git_commit": commit,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def sampler_rows() -> tuple[list[dict], str | None]:
    """Rows of benchmarks/bench_sampler.py (its ``main``/``run``), or the reason it was skipped."""
    try:
        from benchmarks import bench_sampler
    except ImportError as error:
        return [], f"benchmarks/bench_sampler.py not importable ({error})"
    entry = getattr(bench_sampler, "main", None) or getattr(bench_sampler, "run", None)
    if entry is None:
        return [], "benchmarks/bench_sampler.py has no main() or run()"
    takes_argv = bool(inspect.signature(entry).parameters)
    raw = entry([]) if takes_argv else entry()
    if not isinstance(raw, list):
        return [], "bench_sampler returned no rows"
    rows = []
    for row in raw:
        env = row.get("env", "?")
        case = f"rl sampler {env}"
        base = {"case": case, "description": "environment steps per second", "unit": "env steps/s"}
        loop_rate = row.get("raw_steps_per_s")
        batched_rate = row.get("sampler_steps_per_s")
        rows.append(
            {**base, "path": "one env, random actions", "kind": "loop", "steps_per_s": loop_rate}
        )
        rows.append(
            {
                **base,
                "path": f"vectorized sampler ({row.get('sub_envs', '?')} sub-envs)",
                "kind": "batched",
                "steps_per_s": batched_rate,
                "speedup_vs_loop": batched_rate / loop_rate if loop_rate and batched_rate else None,
                "details": row,
            }
        )
    return rows, None


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but CUDA is not available")
    torch.set_num_threads(args.threads)
    if device.type == "cuda":  # exact float32 math, as the parity tests use
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    cases = registry(args.quick)
    child_args = ["--device", args.device, "--threads", str(args.threads)]
    if args.quick:
        child_args.append("--quick")

    if args.memory:  # child process: peak memory of one path
        case_name, path_name = args.memory
        case = cases[case_name][0](device, parity=False)
        path = next(p for p in case.paths if p.name == path_name)
        steps = 2 if case.block > 1 else 1  # one step of the slow cases is enough
        print(f"PEAK_MIB {measure_peak_memory_here(path, device, steps=steps):.3f}")
        return []

    names = list(cases) if args.cases is None else [s.strip() for s in args.cases.split(",")]
    unknown = [n for n in names if n not in cases]
    if unknown:
        raise SystemExit(f"error: unknown cases {unknown}; accepted: {', '.join(cases)}")
    memory_ok = not args.no_memory and (device.type == "cuda" or cpu_memory_supported())
    start = time.perf_counter()
    peak = peak_flops(device)
    print(
        f"- peak: GEMM {peak['gemm_flops_per_s'] / 1e9:.1f} GFLOP/s, "
        f"conv {peak['conv_flops_per_s'] / 1e9:.1f} GFLOP/s",
        flush=True,
    )
    rows: list[dict] = []
    verdicts: list[dict] = []
    skipped: dict[str, str] = {}
    for name in names:
        builder, needs = cases[name]
        missing = missing_modules(needs)
        if missing:
            skipped[name] = f"missing {', '.join(missing)}"
            print(f"- {name}: skipped ({skipped[name]})", flush=True)
            continue
        tick = time.perf_counter()
        case = builder(device)
        times = time_interleaved(case, device)
        memory: dict[str, float | None] = {}
        if memory_ok:
            for path in case.paths:
                if device.type == "cuda":
                    memory[path.name] = measure_peak_memory_here(path, device)
                else:
                    memory[path.name] = measure_peak_memory_subprocess(name, path.name, child_args)
        flops = case_flops(case)
        case_rows = summarize(
            case,
            times,
            memory,
            cpu_time=device.type == "cpu",
            flops=flops,
            peak_flops_per_s=peak["peak_flops_per_s"],
        )
        rows += case_rows
        print(f"- {name}: {time.perf_counter() - tick:.0f} s", flush=True)
        print(format_table(case_rows), flush=True)
        verdict = auto_verdict(case, case_rows, cpu_time=device.type == "cpu")
        if verdict is not None:
            verdicts.append(verdict)
            print(format_verdicts([verdict]), flush=True)
        del case
    if not args.no_sampler and device.type == "cpu":
        print("- rl sampler (benchmarks/bench_sampler.py)", flush=True)
        try:
            extra, reason = sampler_rows()
        except Exception:  # another developer's benchmark: report its failure, keep ours
            extra, reason = [], "bench_sampler failed: " + traceback.format_exc(limit=2)
        rows += extra
        if reason:
            skipped["rl sampler"] = reason
            print(f"  skipped: {reason}", file=sys.stderr)
    info = machine_info(device, args.threads)
    info["wall_s"] = time.perf_counter() - start
    info |= peak
    print()
    print(
        f"# metagym benchmarks: {info['cpu']} ({info['cpu_count']} cores), torch {info['torch']}, "
    )
    print(
        f"# device {info['device']}{' ' + info.get('gpu', '') if 'gpu' in info else ''}, threads {args.threads}"
    )
    print(format_table(rows))
    print()
    print("# backend='auto' against the measured faster path, metagym's default against the peers")
    print(format_verdicts(verdicts))
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    print(f"wall time {info['wall_s']:.0f} s; written {args.out}")
    write_json(args.out, {"machine": info, "rows": rows, "verdicts": verdicts, "skipped": skipped})
    return rows


if __name__ == "__main__":
    main()
