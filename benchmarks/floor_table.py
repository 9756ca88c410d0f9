"""The floor table: each case's default path (and the compiled backend) against its floor and the
machine's peak, from a ``python -m benchmarks`` results file.

    python -m benchmarks.floor_table bench-results.json

Times are CPU-time medians on the CPU (wall clock on CUDA), as in the verdicts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def floor_rows(results: dict) -> list[dict]:
    """One row per case with a floor: the default path (``auto_path``), the compiled backend
    where measured, the fastest right peer, each as a multiple of the floor."""
    key = "median_cpu_ms" if results["machine"]["device"] == "cpu" else "median_ms"
    verdicts = {v["case"]: v for v in results.get("verdicts", [])}
    by_case: dict[str, dict[str, dict]] = {}
    for row in results["rows"]:
        if "skipped" not in row and row.get(key) is not None:
            by_case.setdefault(row["case"], {})[row["path"]] = row
    table = []
    for case, paths in by_case.items():
        floor = next((r for r in paths.values() if r.get("kind") == "floor"), None)
        default = paths.get(paths[next(iter(paths))].get("auto_path", ""))
        if floor is None or default is None:
            continue
        verdict = verdicts.get(case, {})
        peer = paths.get(verdict.get("fastest_right_peer", ""))
        compiled = paths.get("metagym compiled")

        def x(row: dict | None, floor: dict = floor) -> float | None:
            return None if row is None else row[key] / floor[key]

        table.append(
            {
                "case": case,
                "default": default["path"],
                "default_ms": default[key],
                "floor": floor["path"],
                "floor_ms": floor[key],
                "default_x_floor": x(default),
                "gflop": default.get("gflop_per_step"),
                "default_pct_of_peak": default.get("pct_of_peak"),
                "compiled_ms": None if compiled is None else compiled[key],
                "compiled_x_floor": x(compiled),
                "compiled_pct_of_peak": None if compiled is None else compiled.get("pct_of_peak"),
                "peer": None if peer is None else peer["path"],
                "peer_x_floor": x(peer),
            }
        )
    return table


def format_floor_table(table: list[dict]) -> str:
    def n(value, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    lines = [
        "| case | default path | ms | floor | floor ms | x floor | GFLOP | % of peak "
        "| compiled ms | compiled x floor | compiled % of peak | fastest right peer x floor |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        peer = "" if r["peer"] is None else f"{r['peer_x_floor']:.2f} ({r['peer']})"
        lines.append(
            f"| {r['case']} | {r['default']} | {r['default_ms']:.2f} | {r['floor']} "
            f"| {r['floor_ms']:.2f} | **{r['default_x_floor']:.2f}** | {n(r['gflop'], '.3g')} "
            f"| {n(r['default_pct_of_peak'], '.2g')} | {n(r['compiled_ms'], '.2f')} "
            f"| {n(r['compiled_x_floor'], '.2f')} | {n(r['compiled_pct_of_peak'], '.2g')} | {peer} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a python -m benchmarks --out file")
    args = parser.parse_args(argv)
    results = json.loads(Path(args.results).read_text())
    machine = results["machine"]
    peak = machine.get("peak_flops_per_s")
    text = format_floor_table(floor_rows(results))
    if peak:
        text += (
            f"\n\npeak: GEMM {machine['gemm_flops_per_s'] / 1e9:.1f} GFLOP/s, 3x3 convolution "
            f"{machine['conv_flops_per_s'] / 1e9:.1f} GFLOP/s ({machine['device']}, "
            f"{machine['torch_threads']} thread(s))"
        )
    print(text)
    return text


if __name__ == "__main__":
    main()
