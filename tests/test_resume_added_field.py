"""A run folder written before a profile field existed resumes when the field is at its default
(the default is what ran before), and is refused when it is not."""

import json

from metagym.cli import main
from metagym.run_folder import differences

TINY = ["run", "rl", "--profile", "tiny", "--learners", "maml", "--jobs", "1", "--threads", "1"]


def _drop_field(out, name):
    """Remove profile field ``name`` from the folder's definitions, as an older metagym wrote."""
    for path in (out / "run.json", out / "runs" / "maml" / "rows.json"):
        data = json.loads(path.read_text())
        definition = data if path.name == "run.json" else data["definition"]
        definition["profile"].pop(name, None)
        path.write_text(json.dumps(data))


def test_differences_read_a_missing_key_as_its_default():
    old, new = {"profile": {"a": 1}}, {"profile": {"a": 1, "b": 2}}
    assert differences(old, new) == ["profile.b: None -> 2"]
    assert differences(old, new, defaults={"profile": {"b": 2}}) == []
    assert differences(old, new, defaults={"profile": {"b": 3}}) == ["profile.b: 3 -> 2"]
    # a key the old definition has is compared as it is, whatever the default
    assert differences({"profile": {"b": 3}}, new, defaults={"profile": {"b": 2}}) == [
        "profile.a: None -> 1",
        "profile.b: 3 -> 2",
    ]


def test_a_folder_from_before_a_field_resumes_at_its_default(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TINY, "--out", str(out)]) == 0
    first = json.loads((out / "results.json").read_text())["rows"]
    _drop_field(out, "inner_lr")

    assert main([*TINY, "--out", str(out), "--resume"]) == 0
    again = json.loads((out / "results.json").read_text())["rows"]
    assert [r["mean"] for r in again] == [r["mean"] for r in first]

    _drop_field(out, "inner_lr")
    capsys.readouterr()
    assert main([*TINY, "--out", str(out), "--resume", "--inner-lr", "0.5"]) == 2
    assert "profile.inner_lr: 0.1 -> 0.5" in capsys.readouterr().err
