"""The fault catalogue's argument part, generated from the registry: for every domain and every
field of its profile, values that can only be mistakes (unparsable, out of range, not finite,
not a choice, an unknown learner name), and bad run options. Each must end the command with one
line on stderr and exit status 2, before any work (the output folder is not created)."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metagym import domains
from metagym.cli import main
from metagym.domains.profile import INT_CEILING, _unwrap_optional, profile_overrides

#: Free-text fields whose checks belong to the domain (tested with the domains).
FREE_TEXT = {"env", "env_kwargs", "tasks", "task_kwargs"}


def _bad_values(kind, meta: dict, default) -> list[str]:
    """Flag texts that a field of type ``kind`` with range ``meta`` must refuse."""
    kind, optional = _unwrap_optional(kind)
    low, above, high, choices = (meta.get(k) for k in ("low", "above", "high", "choices"))
    origin = typing.get_origin(kind)
    if origin is dict:
        entry = typing.get_args(kind)[1]
        first = next(iter(default))
        bad = [f"{first}=abc", "=3", f"{first}", "nolearner=3"]
        bad[2] = f"{first}=" if entry is int else bad[2]
        if low is not None:
            bad.append(f"{first}={low - 1}")
        bad.append(f"{first}={(high or INT_CEILING) + 1}")
        return bad
    if origin is tuple:
        entry = typing.get_args(kind)[0]
        bad = [",", "x,y"] if entry is not str else [","]
        if entry in (int, float):
            if low is not None:
                bad.append(f"{low - 1}")
            if above is not None:
                bad.append(f"{above}")
            if high is not None:
                bad.append(f"{high + 1}")
        return bad
    if kind is bool:
        return ["maybe", "2"]
    if kind is int:
        bad = ["abc", "1.5", f"{(high or INT_CEILING) + 1}", "99999999999999999999"]
        if low is not None:
            bad.append(f"{low - 1}")
        return bad
    if kind is float:
        bad = ["abc", "nan", "inf", "-inf"]
        if above is not None:
            bad.append(f"{above}")
        if low is not None:
            bad.append(f"{low - 1}")
        if high is not None:
            bad.append(f"{high * 10}")
        return bad
    if kind is str and choices:
        return ["nope", ""]
    return []


def _field_cases():
    for name in domains.names():
        domain = domains.get(name)
        profile = domain.profile(domain.default_profile)
        types = profile.field_types()
        for spec in dataclasses.fields(profile):
            if spec.name in FREE_TEXT:
                continue
            flag = "--" + spec.name.replace("_", "-")
            values = _bad_values(types[spec.name], dict(spec.metadata), getattr(profile, spec.name))
            for value in dict.fromkeys(values):
                yield pytest.param(name, [f"{flag}={value}"], flag, id=f"{name}{flag}={value!r}")


COMMON = [
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**31)], "--seed"),
    (["--seed", str(10**23)], "--seed"),
    (["--jobs", "-1"], "--jobs"),
    (["--jobs", "100000"], "--jobs"),
    (["--threads", "-2"], "--threads"),
    (["--threads", "100000"], "--threads"),
    (["--device", "tpu"], "--device"),
    (["--device", "mps"], "--device"),
    (["--device", ""], "--device"),
    (["--device", "cuda:99"], "--device"),
    (["--learners", "nope"], "unknown learner"),
    (["--learners", ","], "no learner"),
    (["--learners", "maml,maml,zzz"], "names maml twice"),
    (["--learners", "maml,,zzz"], "empty name"),
]


def _common_cases():
    for name in domains.names():
        for args, needle in COMMON:
            yield pytest.param(name, args, needle, id=f"{name}{'='.join(args)}")


def _check_refused(name, args, needle, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["run", name, *args, "--profile", "tiny", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2, (args, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
    assert not out.exists()


@pytest.mark.parametrize(("name", "args", "needle"), list(_field_cases()))
def test_bad_profile_value_is_refused_before_work(name, args, needle, tmp_path, capsys):
    _check_refused(name, args, needle, tmp_path, capsys)


@pytest.mark.parametrize(("name", "args", "needle"), list(_common_cases()))
def test_bad_run_option_is_refused_before_work(name, args, needle, tmp_path, capsys):
    import torch

    if "cuda" in args[-1] and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    _check_refused(name, args, needle, tmp_path, capsys)


def test_an_output_path_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("keep me")
    assert main(["run", "sinusoid", "--profile", "tiny", "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "keep me"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(
        [f.name for f in dataclasses.fields(domains.get("sinusoid").profile_class)]
    ),
    text=st.text(max_size=12) | st.integers().map(str) | st.floats().map(str),
)
def test_any_flag_text_is_accepted_in_range_or_refused_with_a_value_error(field, text):
    """Whatever is typed, the profile either validates (every field in its range) or the error
    is a ValueError naming the flag: never another exception."""
    profile = domains.get("sinusoid").profile("tiny")

    class Args:
        pass

    args = Args()
    setattr(args, f"profile.{field}", text)
    try:
        changed = profile.replace(**profile_overrides(args, profile))
    except ValueError as error:
        assert "--" + field.replace("_", "-") in str(error)
    else:
        changed.validate()
