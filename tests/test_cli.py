"""The ``metagym`` command and the profiles behind its flags."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from metagym import domains
from metagym.cli import main
from metagym.domains.profile import field_docs, parse_flag

ROOT = Path(__file__).resolve().parents[1]


def test_list_names_every_domain_learner_family_and_environment(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in domains.names():
        assert f"{name}: " in out
        for learner, recipe in domains.get(name).recipes.items():
            assert any(line.split()[:2] == [learner, recipe.family] for line in out.splitlines()), (
                learner
            )
    assert "metagym/Navigation2D-v0" in out and "metagym/Bandit-v0" in out


def test_console_script_and_module_are_the_same_command():
    script = Path(sys.executable).parent / "metagym"
    for command in ([str(script)], [sys.executable, "-m", "metagym"]):
        if not Path(command[0]).exists():
            pytest.skip("the console script is not installed in this environment")
        done = subprocess.run(
            [*command, "run", "sinusoid", "--help"], capture_output=True, text=True, cwd=ROOT
        )
        assert done.returncode == 0
        assert "--inner-lr" in done.stdout and "inner SGD step size" in done.stdout


@pytest.mark.parametrize("name", sorted(domains.names()))
def test_every_profile_field_is_a_documented_flag(name, capsys):
    domain = domains.get(name)
    docs = field_docs(domain.profile_class)
    for spec in dataclasses.fields(domain.profile_class):
        assert docs.get(spec.name), f"{name}: profile field {spec.name} has no docstring"
    for profile in domain.profiles.values():
        profile.validate()
    with pytest.raises(SystemExit):
        main(["run", name, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for spec in dataclasses.fields(domain.profile_class):
        assert "--" + spec.name.replace("_", "-") in out


def test_flags_parse_into_the_field_types():
    profile = domains.get("sinusoid").profile("tiny")
    types = profile.field_types()
    assert parse_flag(types["eval_steps"], "0,1, 3") == (0, 1, 3)
    iterations = parse_flag(types["iterations"], "maml=7", profile.iterations)
    assert iterations["maml"] == 7 and iterations["blackbox"] == profile.iterations["blackbox"]
    assert set(parse_flag(types["iterations"], "9", profile.iterations).values()) == {9}
    rl = domains.get("rl").profile("tiny")
    assert parse_flag(rl.field_types()["max_episode_steps"], "none") is None
    assert parse_flag(rl.field_types()["trial_total"], "yes") is True


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"inner_lr": 0.0}, "--inner-lr must be > 0"),
        ({"inner_lr": float("inf")}, "finite"),
        ({"meta_batch": True}, "--meta-batch must be an integer"),
        ({"shots": 7}, "--shots must be one of 5, 10, 20"),
        ({"iterations": {"maml": 10**12}}, "--iterations[maml] must be <="),
        ({"eval_steps": ()}, "at least one value"),
        ({"backend": "jax"}, "--backend must be one of auto, higher, vmap"),
    ],
)
def test_profile_validation_refuses_bad_values(changes, message):
    profile = domains.get("sinusoid").profile("tiny")
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        profile.replace(**changes)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "sinusoid", "--iterations", "99999999999999"], "--iterations[maml] must be <="),
        (["run", "sinusoid", "--iterations", "a"], "--iterations: cannot read 'a'"),
        (["run", "sinusoid", "--device", "tpu"], "is not a torch device"),
        (["run", "sinusoid", "--device", "mps"], "metagym runs on cpu or cuda"),
        (["run", "sinusoid", "--device", "cuda:0"], "CUDA is not available"),
        (["run", "sinusoid", "--seed", "-1"], "--seed must be between"),
        (["run", "sinusoid", "--learners", "maml,nope"], "unknown learner ['nope']"),
        (["run", "sinusoid", "--jobs", "100000"], "--jobs and --threads"),
        (["run", "regression"], "needs --tasks module:Class"),
        (["run", "regression", "--tasks", "nowhere:Nothing"], "cannot import module 'nowhere'"),
        (["run", "rl", "--env-kwargs", "{"], "--env-kwargs is not JSON"),
        (["plot", "/nonexistent/run"], "no results.json in /nonexistent/run"),
    ],
)
def test_bad_input_is_one_line_and_status_2_before_any_work(args, message, tmp_path, capsys):
    if "cuda" in " ".join(args):
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    out = tmp_path / "out"
    extra = ["--out", str(out), "--profile", "tiny"] if args[0] == "run" else []
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["plot", str(tmp_path / "nothing"), "--debug"])


def test_run_api_returns_the_results_of_each_variant(tmp_path):
    from metagym.experiment import run

    out = run("sinusoid", "tiny", ["oracle"], out_dir=tmp_path / "o", jobs=1, progress=False)
    assert list(out) == [""]
    rows = out[""]["rows"]
    assert {r["learner"] for r in rows} == {"oracle"} and {r["family"] for r in rows} == {
        "baseline"
    }
    assert (tmp_path / "o" / "runs" / "oracle" / "rows.json").is_file()


# -- refusals found by auditing the command line ----------------------------------------------------
def _tiny(out, *extra):
    args = [
        "run",
        "sinusoid",
        "--profile",
        "tiny",
        "--jobs",
        "1",
        "--no-progress",
        "--out",
        str(out),
    ]
    return main([*args, *extra])


def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert all(f in err for f in fragments), err


def test_parser_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "sinusoid", "--seed", "1.5"])
    assert exit_.value.code == 2
    _one_line_error(capsys, "--seed", "invalid int value", "--help")


def test_empty_or_repeated_names_and_an_empty_out_are_refused(tmp_path, capsys):
    assert _tiny(tmp_path / "a", "--learners", "oracle,,maml") == 2
    _one_line_error(capsys, "empty name")
    assert _tiny(tmp_path / "a", "--learners", "oracle,oracle") == 2
    _one_line_error(capsys, "oracle twice")
    assert _tiny("", "--learners", "oracle") == 2
    _one_line_error(capsys, "--out is empty")
    omniglot = ["run", "omniglot", "--profile", "tiny", "--ways", "5,5", "--out", str(tmp_path)]
    assert main([*omniglot, "--data-root", "/nowhere-at-all"]) == 2
    _one_line_error(capsys, "--ways 5,5 names a value twice")
    assert not (tmp_path / "a").exists()


def test_aggregate_and_evaluate_refuse_what_would_damage_a_run(tmp_path, capsys):
    for seed in (0, 1, 2):
        assert _tiny(tmp_path / f"s{seed}", "--learners", "oracle", "--seed", str(seed)) == 0
    capsys.readouterr()
    before = (tmp_path / "s2" / "results.json").read_bytes()
    runs = [str(tmp_path / "s0"), str(tmp_path / "s1")]
    assert main(["aggregate", *runs, "--out", str(tmp_path / "s2"), "--no-plots"]) == 2
    _one_line_error(capsys, "holds a run")
    assert (tmp_path / "s2" / "results.json").read_bytes() == before
    assert main(["evaluate", runs[0], "--threads", "99999", "--no-progress"]) == 2
    _one_line_error(capsys, "--threads must be between 0 and 1024")
    assert main(["evaluate", runs[0], "--steps", ",", "--no-progress"]) == 2
    _one_line_error(capsys, "--steps", "comma-separated integers")
    assert main(["evaluate", runs[0], "--splits", "", "--no-progress"]) == 2
    _one_line_error(capsys, "--splits is empty")
    (tmp_path / "file").write_text("x")
    assert main(["aggregate", *runs, "--out", str(tmp_path / "file"), "--no-plots"]) == 2
    _one_line_error(capsys, "is a file")
    (tmp_path / "s1" / "run.json").write_text("[]")
    assert _tiny(tmp_path / "s1", "--learners", "oracle", "--seed", "1", "--resume") == 2
    _one_line_error(capsys, "run.json holds a JSON list, not an object")


def test_a_folder_laid_out_for_another_domain_is_refused(tmp_path, capsys):
    out = tmp_path / "mixed"
    (out / "5way-1shot").mkdir(parents=True)
    (out / "5way-1shot" / "run.json").write_text('{"domain": "omniglot"}')
    assert _tiny(out, "--learners", "oracle") == 2
    _one_line_error(capsys, "holds runs in subfolders (5way-1shot)")
    assert not (out / "runs").exists()


def test_resume_checks_every_checkpoint_before_training_anything(tmp_path, capsys):
    out = tmp_path / "run"
    assert _tiny(out, "--learners", "maml,blackbox") == 0
    for name in ("maml", "blackbox"):
        (out / "runs" / name / "rows.json").unlink()
    (out / "runs" / "maml" / "learner.pt").unlink()
    damaged = out / "runs" / "blackbox" / "checkpoint.pt"
    damaged.write_bytes(damaged.read_bytes()[:500])
    before = (out / "runs" / "maml" / "metrics.csv").read_bytes()
    capsys.readouterr()
    assert _tiny(out, "--learners", "maml,blackbox", "--resume") == 2
    _one_line_error(capsys, "blackbox", "checkpoint.pt is damaged")
    assert not (out / "runs" / "maml" / "rows.json").exists()  # maml was not run again first
    assert (out / "runs" / "maml" / "metrics.csv").read_bytes() == before


def test_reptile_minibatches_beyond_a_tasks_examples_and_beside_on_a_non_rl_run(tmp_path, capsys):
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"
    if not data.is_dir():
        pytest.skip("no Omniglot data")
    args = ["run", "omniglot", "--profile", "tiny", "--learners", "reptile", "--no-progress"]
    args += ["--data-root", str(data), "--out", str(tmp_path / "o"), "--reptile-train-batches"]
    assert main([*args, "1000"]) == 2
    _one_line_error(capsys, "--reptile-train-batches 1000 is more than the")
    assert not (tmp_path / "o" / "5way-1shot" / "runs").exists()  # refused before training
    assert _tiny(tmp_path / "s", "--learners", "oracle") == 0
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "s"), "--beside", str(tmp_path / "s")]) == 2
    _one_line_error(capsys, "is not an RL run")
