"""``metagym report --profile tiny``: the report's structure (every claim with numbers, a figure
and a computed verdict), its self-contained HTML, --resume, and bad input refused before work."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from metagym.cli import main
from metagym.report.verdicts import CLAIM_VERDICTS, CONTRADICTED, combine

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"


def _data_root() -> Path | None:
    from metagym.data.omniglot import find_omniglot

    root = Path(os.environ.get("METAGYM_DATA") or SHARED_DATA)
    return root if find_omniglot(root) is not None else None


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """One tiny report (Omniglot left out, with the reason, when its data is absent)."""
    out = tmp_path_factory.mktemp("report") / "tiny"
    args = ["report", "--profile", "tiny", "--out", str(out), "--jobs", "1", "--no-progress"]
    root = _data_root()
    if root is None:
        args += ["--domains", "sinusoid,rl"]  # Omniglot npz files not found: its claims say so
    else:
        args += ["--data-root", str(root)]
    assert main(args) == 0
    return out, args, root is not None


def test_every_claim_has_numbers_a_figure_and_a_computed_verdict(tiny_report):
    out, _, _ = tiny_report
    result = json.loads((out / "claims.json").read_text())
    claims = result["claims"]
    assert [c["id"] for c in claims] == [1, 2, 3, 4, 5, 6]
    for claim in claims:
        assert claim["verdict"] in CLAIM_VERDICTS
        assert claim["rule"] and claim["comparisons"], claim["id"]
        figure = out / claim["figure"]
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # Every comparison has a number, or says why not (at tiny budgets a learner may not
        # learn at all, and the report must then say so rather than compare noise).
        for comparison in claim["comparisons"]:
            if comparison.get("group") == "registry":  # which families exist: no number
                continue
            assert comparison["value"] is not None or comparison.get("note"), comparison
        if claim["id"] == 5:
            assert all(c["value"] is not None for c in claim["comparisons"])
        if claim["id"] != 4:  # claim 4 needs both of its parts
            assert claim["verdict"] == combine(c["verdict"] for c in claim["comparisons"])
            unpaired = combine(c["verdict_unpaired"] for c in claim["comparisons"])
            assert claim["verdict_unpaired"] == unpaired
        for domain, entry in claim["domains"].items():
            assert {entry["verdict"], entry["verdict_unpaired"]} <= set(CLAIM_VERDICTS)
            assert sum(entry["counts"].values()) == sum(
                c["domain"] == domain for c in claim["comparisons"]
            )
        for c in claim["comparisons"]:
            if c["verdict"] == "inconclusive" and c["paired"] and abs(c["value"] or 0) > 1e-12:
                assert c["tasks_needed"] is not None or c["seeds_needed"] is not None, c
    # rows of one run are scored on the same tasks: real folders pair, and narrower
    paired = [c for claim in claims for c in claim["comparisons"] if c["pairing"] == "tasks"]
    assert paired and all(c["effect_size"] is not None for c in paired if c["ci95"] > 0)
    intervals = result["intervals"]
    assert intervals["n_paired"] >= len(paired) and intervals["n_claims"] == 6
    ratio = intervals["median_ci95"] / intervals["median_ci95_unpaired"]
    assert intervals["ratio_of_medians"] == pytest.approx(ratio)
    for key, rule in (("verdict", "paired"), ("verdict_unpaired", "unpaired")):
        decided = sum(c[key] in ("supported", "contradicted") for c in claims)
        assert intervals["decided"][rule]["claims"] == decided
    compute = result["compute_matched"]
    assert compute["comparisons"] and (out / compute["figure"]).read_bytes()[:4] == b"\x89PNG"
    four = claims[3]
    cells = {(m["domain"], m["family"]): m for m in four["matrix"]}
    assert cells[("sinusoid", "non-parametric")]["status"] == "no recipe"
    assert cells[("rl", "non-parametric")]["status"] == "no recipe"
    assert cells[("sinusoid", "gradient")]["best"]
    assert four["parts"]["applicability"] != CONTRADICTED
    five = claims[4]
    timed = [t for t in five["table"] if t["iterations"]]
    assert timed and all(t["per_update_s"] > 0 and t["peak_mb"] > 0 for t in timed)
    assert {p["experiment"] for p in result["parts"]} >= {"sinusoid-k5", "rl-navigation"}


def test_report_files_are_complete_and_the_html_self_contained(tiny_report):
    out, _, _ = tiny_report
    markdown = (out / "report.md").read_text()
    for number in range(1, 7):
        assert f"## Claim {number}:" in markdown
        assert f"(figures/claim-{number}.png)" in markdown
    assert "## Compute-matched" in markdown and "(figures/compute-matched.png)" in markdown
    assert "Paired against unpaired intervals" in markdown and "verdict (unpaired)" in markdown
    assert "## What ran" in markdown and "wall s" in markdown and "Budgets:" in markdown
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 7  # six claims and compute-matched
    assert 'src="figures' not in page and "http://" not in page and "https://" not in page
    assert page.count("<h2>Claim ") == 6
    config = json.loads((out / "runs/sinusoid-k5/seed-0/results.json").read_text())["config"]
    assert config["memory"]["maml"]["peak_mb"] > 0
    splits = {
        r["split"]
        for r in json.loads((out / "runs/sinusoid-k5/seed-0/results.json").read_text())["rows"]
    }
    assert {"ood-amplitude-3", "ood-phase-1", "ood-extrapolate-2", "ood-phase"} <= splits


def test_resume_reuses_every_finished_run(tiny_report, capsys):
    out, args, _ = tiny_report
    learner_file = out / "runs/sinusoid-k5/seed-0/runs/maml/rows.json"
    before = learner_file.stat().st_mtime_ns
    assert main([*args, "--resume"]) == 0
    assert learner_file.stat().st_mtime_ns == before
    assert json.loads((out / "claims.json").read_text())["claims"][0]["verdict"] in CLAIM_VERDICTS


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--seeds", "0,x"], "--seeds"),
        (["--seeds", "1,1"], "twice"),
        (["--seeds", "0,,1"], "--seeds"),
        (["--seeds", "-3"], "--seeds"),
        (["--domains", "mujoco"], "--domains"),
        (["--data-root", "/nonexistent/data"], "--data-root"),
        (["--device", "tpu"], "--device"),
    ],
)
def test_bad_input_is_one_error_line_before_any_work(tmp_path, capsys, extra, needle):
    out = tmp_path / "out"
    status = main(["report", "--profile", "tiny", "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1 and needle in err
    assert not out.exists()


def test_a_folder_holding_a_report_is_refused_without_resume_and_with_other_settings(
    tiny_report, capsys
):
    out, args, _ = tiny_report
    assert main(args) == 2
    assert "already holds a report" in capsys.readouterr().err
    other = [a if a != "tiny" else "quick" for a in args]
    assert main([*other, "--resume"]) == 2
    assert "other settings" in capsys.readouterr().err
