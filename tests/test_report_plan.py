"""The report's plan: Meta-World is an opt-in domain whose experiment runs the ``rl`` domain on
ML10 (held-out envs as its shift); the default report is unchanged."""

import pytest

from metagym.report.build import parse_domains
from metagym.report.plan import DEFAULT_DOMAINS, plan, registered_domains


@pytest.mark.parametrize("profile", ["tiny", "quick", "paper"])
def test_metaworld_is_opt_in(profile):
    assert "rl-metaworld" not in [e.name for e in plan(profile)]
    chosen = plan(profile, ("sinusoid", "metaworld"))
    assert [e.domain for e in chosen if e.name == "rl-metaworld"] == ["rl"]
    assert {e.selected_by() for e in chosen} == {"sinusoid", "metaworld"}
    (metaworld,) = [e for e in chosen if e.name == "rl-metaworld"]
    settings = metaworld.profile()
    assert settings.env == "metaworld/ML10" and "ood" in settings.eval_splits
    families = {"gradient", "black-box"}
    assert set(metaworld.learners()) >= {"maml", "rl2", "random", "oracle"}
    assert metaworld.families == tuple(sorted(families, reverse=True))


def test_report_domains_map_to_registered_ones():
    assert parse_domains(None) == DEFAULT_DOMAINS
    assert parse_domains("rl,metaworld") == ("rl", "metaworld")
    assert registered_domains(("rl", "metaworld")) == ("rl",)
    assert registered_domains(("metaworld", "sinusoid")) == ("rl", "sinusoid")
    with pytest.raises(ValueError, match="accepted: sinusoid, omniglot, rl, metaworld"):
        parse_domains("mujoco")


@pytest.mark.slow
def test_a_tiny_metaworld_report_enters_claims_1_and_2(tmp_path):
    pytest.importorskip("metaworld")
    from metagym.cli import main
    from metagym.results import read_json

    out = tmp_path / "report"
    assert main(["report", "--profile", "tiny", "--domains", "metaworld", "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    claims = {c["id"]: c for c in read_json(out / "claims.json")["claims"]}
    groups = {c["group"] for n in (1, 2) for c in claims[n]["comparisons"]}
    assert groups == {"rl-metaworld"}
    whats = " ".join(c["what"] for c in claims[2]["comparisons"])
    assert (
        "ood-heldout" in whats
        or "not measured" in whats
        or "did not learn" in " ".join(c["note"] for c in claims[2]["comparisons"])
    )


def test_pearl_runs_in_the_tiny_report_and_is_named_as_left_out_of_the_quick_one():
    (tiny,) = [e for e in plan("tiny") if e.name == "rl-navigation"]
    assert {"maml", "rl2", "transformer", "pearl"} <= set(tiny.learners())
    assert tiny.profile().pearl_iterations <= 2  # seconds, not the quick profile's 500
    (quick,) = [e for e in plan("quick") if e.name == "rl-navigation"]
    assert "pearl" not in quick.learners() and "pearl" in quick.absent()
