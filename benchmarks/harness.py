"""Timing and memory measurement shared by the benchmark cases.

- Time: the paths of a case run interleaved (``A B C A B C ...``, the order rotating every round)
  after warm-up steps, so a noisy, shared machine slows them alike; the median of each is kept.
  Each sample is a block of ``block`` consecutive steps (as in training, where steps follow each
  other with warm caches), divided by ``block``.
  Both wall-clock time and the thread's CPU time are recorded: on a shared CPU the CPU time is
  what the step costs, the wall time adds whatever other processes took meanwhile. (On CUDA only
  the wall time, with synchronization, means anything.)
- Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` over a few steps; on the CPU, each
  path runs in a fresh subprocess whose allocator returns every block of 16 KiB or more to the
  system when freed (``MALLOC_MMAP_THRESHOLD_``), and the rise of the peak resident set size
  (``VmHWM``, reset through ``/proc/self/clear_refs``) over a few steps is the step's peak memory.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

#: What a path is: the per-task loop, the batched path, another library's MAML, or the raw
#: compute floor.
KINDS = ("loop", "batched", "peer", "floor")


@dataclass
class BenchPath:
    """One way of doing a case's work: ``step()`` runs one meta-training step."""

    name: str
    kind: str
    step: Callable[[], object]


@dataclass
class Case:
    """A benchmark case: the paths to compare, how many timed rounds, and notes for the table."""

    name: str
    description: str
    paths: list[BenchPath]
    rounds: int
    warmup: int = 2
    #: Consecutive steps per timed sample.
    block: int = 1
    #: Paths that cannot run (e.g. a net the batched backend refuses): path name -> reason.
    skipped: dict[str, str] = field(default_factory=dict)
    #: Fields added to every row of the case (e.g. the meta-gradient difference of the paths).
    extra: dict = field(default_factory=dict)


@dataclass
class Timings:
    """Seconds per step of each path: wall clock and this thread's CPU time."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(case: Case, device: torch.device) -> Timings:
    """Seconds per step of every path of ``case``, measured in interleaved rounds."""
    for path in case.paths:
        for _ in range(case.warmup):
            path.step()
    synchronize(device)
    wall: dict[str, list[float]] = {p.name: [] for p in case.paths}
    cpu: dict[str, list[float]] = {p.name: [] for p in case.paths}
    for r in range(case.rounds):
        shift = r % len(case.paths)
        for path in case.paths[shift:] + case.paths[:shift]:
            synchronize(device)
            start, start_cpu = time.perf_counter(), time.thread_time()
            for _ in range(case.block):
                path.step()
            synchronize(device)
            wall[path.name].append((time.perf_counter() - start) / case.block)
            cpu[path.name].append((time.thread_time() - start_cpu) / case.block)
    return Timings(wall, cpu)


def _status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/self/status")


def measure_peak_memory_here(path: BenchPath, device: torch.device, steps: int = 2) -> float:
    """Peak extra memory (MiB) of ``steps`` calls of ``path.step`` in this process, after one
    warm-up call (lazy initializations are not the step's memory)."""
    path.step()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        for _ in range(steps):
            path.step()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    before = _status_kb("VmRSS")
    for _ in range(steps):
        path.step()
    return (_status_kb("VmHWM") - before) / 1024


def cpu_memory_supported() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _status_kb("VmHWM")
        return True
    except (OSError, RuntimeError):
        return False


def measure_peak_memory_subprocess(
    case_name: str, path_name: str, args: list[str], timeout: float = 300
) -> float | None:
    """Run ``python -m benchmarks --memory CASE PATH`` and read the MiB it prints (None on error)."""
    command = [sys.executable, "-m", "benchmarks", *args, "--memory", case_name, path_name]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "16384", "MALLOC_TRIM_THRESHOLD_": "0"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        print(f"  memory of {case_name} / {path_name} timed out", file=sys.stderr)
        return None
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("PEAK_MIB "):
            return float(line.split()[1])
    print(f"  memory of {case_name} / {path_name} failed: {done.stderr[-500:]}", file=sys.stderr)
    return None


def summarize(
    case: Case,
    times: Timings,
    memory: dict[str, float | None],
    *,
    cpu_time: bool = True,
    flops: dict[str, int] | None = None,
    peak_flops_per_s: float | None = None,
) -> list[dict]:
    """One row per path: medians, steps/s, peak memory, speed-up over the loop, and x floor
    (ratios of wall-clock medians; with ``cpu_time``, also of CPU-time medians). With ``flops``
    (path -> FLOPs of one step) and the device's measured peak FLOP/s, also GFLOP per step and
    the share of the peak the step reaches (over its CPU-time median on the CPU)."""
    flops = flops or {}
    wall = {name: statistics.median(values) for name, values in times.wall.items()}
    cpu = {name: statistics.median(values) for name, values in times.cpu.items()}
    loop = next((p.name for p in case.paths if p.kind == "loop"), None)
    floor = next((p.name for p in case.paths if p.kind == "floor"), None)
    rows = []
    for path in case.paths:
        median = wall[path.name]
        row = {
            "case": case.name,
            "description": case.description,
            "path": path.name,
            "kind": path.kind,
            "median_ms": median * 1e3,
            "steps_per_s": 1 / median,
            "peak_mem_mib": memory.get(path.name),
            "speedup_vs_loop": wall[loop] / median if loop else None,
            "x_floor": median / wall[floor] if floor else None,
            "rounds": len(times.wall[path.name]),
            "steps_per_round": case.block,
        }
        if cpu_time:
            row["median_cpu_ms"] = cpu[path.name] * 1e3
            row["speedup_vs_loop_cpu"] = cpu[loop] / cpu[path.name] if loop else None
            row["x_floor_cpu"] = cpu[path.name] / cpu[floor] if floor else None
        if path.name in flops:
            seconds = cpu[path.name] if cpu_time else median
            row["gflop_per_step"] = flops[path.name] / 1e9
            if peak_flops_per_s:
                row["pct_of_peak"] = 100 * flops[path.name] / seconds / peak_flops_per_s
        rows.append({**row, **case.extra})
    for name, reason in case.skipped.items():
        rows.append(
            {
                "case": case.name,
                "description": case.description,
                "path": name,
                "kind": "batched" if name.startswith("metagym") else "peer",
                "skipped": reason,
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table of the rows (one per case and path)."""
    lines = [
        "| case | path | median ms | steps/s | peak MiB | speed-up vs loop | x floor "
        "| CPU ms | speed-up (CPU time) | x floor (CPU time) | GFLOP | % of peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def number(value, fmt):
        return "" if value is None else format(value, fmt)

    for row in rows:
        if "skipped" in row:
            note = row["skipped"]
            if not note.startswith(("wrong", "n/a")):
                note = f"{'skipped' if row.get('kind') == 'peer' else 'refused'}: {note}"
            lines.append(f"| {row['case']} | {row['path']} | {note} ||||||||||")
            continue
        lines.append(
            f"| {row['case']} | {row['path']} | {number(row.get('median_ms'), '.2f')} "
            f"| {number(row.get('steps_per_s'), '.1f')} | {number(row.get('peak_mem_mib'), '.1f')} "
            f"| {number(row.get('speedup_vs_loop'), '.2f')} | {number(row.get('x_floor'), '.2f')} "
            f"| {number(row.get('median_cpu_ms'), '.2f')} "
            f"| {number(row.get('speedup_vs_loop_cpu'), '.2f')} "
            f"| {number(row.get('x_floor_cpu'), '.2f')} "
            f"| {number(row.get('gflop_per_step'), '.3g')} "
            f"| {number(row.get('pct_of_peak'), '.2g')} |"
        )
    return "\n".join(lines)


def write_json(path: str | Path, payload: dict) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def auto_verdict(case: Case, rows: list[dict], *, cpu_time: bool) -> dict | None:
    """Whether ``backend="auto"`` picked the fastest of metagym's backends here, and how
    metagym's default path compares with the fastest peer whose meta-gradients are right.

    Medians of CPU time on the CPU (what a step costs on a shared machine), of wall time on CUDA.
    ``default_vs_fastest_peer`` is the peer's median over the default's: >= 1 means metagym's
    default is at least as fast. None for cases without an ``auto_path``.
    """
    auto = case.extra.get("auto_path")
    if auto is None:
        return None
    key = "median_cpu_ms" if cpu_time else "median_ms"
    timed = {r["path"]: r[key] for r in rows if "skipped" not in r and r.get(key) is not None}
    backends = {
        n: ms for n, ms in timed.items() if n in ("metagym higher", "metagym vmap", "metagym loop")
    }
    compiled = timed.get("metagym compiled")
    peers = {
        r["path"]: timed[r["path"]] for r in rows if r.get("kind") == "peer" and r["path"] in timed
    }
    verdict: dict = {"case": case.name, "auto_path": auto, "measure": key}
    if backends:
        faster = min(backends, key=backends.get)
        verdict |= {
            "faster_metagym_path": faster,
            "auto_matches_faster": auto == faster or len(backends) == 1,
            "metagym_ms": backends,
        }
    if auto in timed and peers:
        best = min(peers, key=peers.get)
        verdict |= {
            "fastest_right_peer": best,
            "fastest_right_peer_ms": peers[best],
            "default_ms": timed[auto],
            "default_vs_fastest_peer": peers[best] / timed[auto],
        }
    if compiled is not None and auto in timed:
        # auto never picks the compiled backend: its compilation costs seconds per run
        compile_s = case.extra.get("compile_s", {}).get("metagym compiled")
        saved_ms = timed[auto] - compiled
        verdict |= {
            "compiled_ms": compiled,
            "compiled_speedup": timed[auto] / compiled,
            "compile_s": compile_s,
            "break_even_steps": (
                compile_s * 1e3 / saved_ms if compile_s is not None and saved_ms > 0 else None
            ),
        }
    verdict["wrong_gradients"] = sorted(
        r["path"] for r in rows if str(r.get("skipped", "")).startswith("wrong meta-gradients")
    )
    return verdict


def format_verdicts(verdicts: list[dict]) -> str:
    """A Markdown table of :func:`auto_verdict` results."""
    lines = [
        "| case | auto runs | faster metagym path | auto right? | fastest right peer "
        "| peer ms | default ms | peer / default | compiled ms (compile s) "
        "| steps to repay the compilation | wrong gradients |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]

    def compiled(v: dict) -> tuple[str, str]:
        if "compiled_ms" not in v:
            return "", ""
        seconds = v.get("compile_s")
        cell = f"{v['compiled_ms']:.2f}" + (f" ({seconds:.1f})" if seconds is not None else "")
        steps = v.get("break_even_steps")
        return cell, "never" if steps is None else f"{steps:,.0f}"

    for v in verdicts:
        ratio = v.get("default_vs_fastest_peer")
        compiled_cell, repay = compiled(v)
        lines.append(
            f"| {v['case']} | {v['auto_path']} | {v.get('faster_metagym_path', '')} "
            f"| {'yes' if v.get('auto_matches_faster') else 'NO'} "
            f"| {v.get('fastest_right_peer', '')} "
            f"| {format(v['fastest_right_peer_ms'], '.2f') if 'fastest_right_peer_ms' in v else ''} "
            f"| {format(v['default_ms'], '.2f') if 'default_ms' in v else ''} "
            f"| {format(ratio, '.2f') if ratio is not None else ''} "
            f"| {compiled_cell} | {repay} "
            f"| {', '.join(v['wrong_gradients'])} |"
        )
    return "\n".join(lines)
