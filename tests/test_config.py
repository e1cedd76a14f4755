"""waveforms.config: one way from dicts, files and flags to validated dataclasses (KFP's float numbers mended once)."""

import argparse
import json
from dataclasses import dataclass, field

import pytest

from waveforms import config


@dataclass(frozen=True)
class Inner:
    width: int = 4
    rate: float = 0.5

    def validate(self):
        if self.width < 1:
            raise ValueError(f"Inner.width must be >= 1, got {self.width}")
        return self


@dataclass(frozen=True)
class Outer:
    steps: int = 10
    limit: int | None = None
    scale: float = 1.0
    names: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()
    jit: bool = True
    mode: str = "fast"
    inner: Inner = field(default_factory=lambda: Inner(width=8))


def test_numbers_from_json_get_their_field_type_and_fractions_in_whole_fields_are_refused():
    made = config.from_dict(
        Outer, {"steps": 200.0, "limit": 3.0, "scale": 2, "names": ["a", "b"], "pairs": [["x", "y"]]}
    )
    assert made == Outer(steps=200, limit=3, scale=2.0, names=("a", "b"), pairs=(("x", "y"),))
    assert type(made.steps) is int and type(made.limit) is int and type(made.scale) is float
    assert config.from_dict(Outer, {"names": "solo"}).names == ("solo",)  # one name, not its characters
    with pytest.raises(ValueError, match=r"^kfp: steps must be a whole number, got 2.5$"):
        config.from_dict(Outer, {"steps": 2.5}, "kfp")
    assert config.from_dict(Outer, {"jit": 1}).jit == 1  # not mended: bools are the dataclass's validate() to judge
    assert config.coerce_fields(Outer, {"steps": 7.0, "other": 7.0}, "x") == {"steps": 7, "other": 7.0}


def test_unknown_fields_and_non_mappings_are_one_line_errors_naming_the_source():
    with pytest.raises(ValueError, match=r"^here: unknown Outer field\(s\) \['stepz'\]; known fields: \[") as error:
        config.from_dict(Outer, {"stepz": 1}, "here")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="here: expected a mapping of Outer fields, got list"):
        config.from_dict(Outer, [1], "here")


def test_nested_dataclasses_are_laid_over_their_default_and_validated():
    made = config.from_dict(Outer, {"inner": {"rate": 1}})
    assert made.inner == Inner(width=8, rate=1.0)  # the field's default width, not the class's
    assert config.from_dict(Outer, {"inner": Inner(2)}).inner == Inner(2)
    with pytest.raises(ValueError, match=r"unknown Inner field\(s\) \['depth'\]"):
        config.from_dict(Outer, {"inner": {"depth": 3}})
    with pytest.raises(ValueError, match="Inner.width must be >= 1"):
        config.from_dict(Outer, {"inner": {"width": 0.0}})


def test_load_reads_presets_json_and_yaml_then_overrides(tmp_path):
    presets = {"big": Outer(steps=1000)}
    assert config.load(Outer, "big", presets, "outer config").steps == 1000
    assert config.load(Outer, "big", presets, "outer config", scale=3.0).scale == 3.0
    (tmp_path / "a.json").write_text(json.dumps({"steps": 5.0, "inner": {"width": 2}}))
    (tmp_path / "a.yaml").write_text("steps: 6\nnames: [x]\n")
    assert config.load(Outer, str(tmp_path / "a.json"), presets).inner == Inner(2)
    assert config.load(Outer, str(tmp_path / "a.yaml"), presets, steps=9) == Outer(steps=9, names=("x",))
    with pytest.raises(ValueError, match=r"outer config 'huge': not a named configuration \(big\)"):
        config.load(Outer, "huge", presets, "outer config")
    with pytest.raises(ValueError, match="missing.yml.*file not found"):
        config.load(Outer, str(tmp_path / "missing.yml"), presets)
    (tmp_path / "bad.yaml").write_text("steps: [1\n")
    with pytest.raises(ValueError, match="bad.yaml.*cannot parse") as error:
        config.load(Outer, str(tmp_path / "bad.yaml"), presets)
    assert "\n" not in str(error.value) and "line" in str(error.value)
    (tmp_path / "typo.json").write_text('{"stepz": 1}')
    with pytest.raises(ValueError, match=r"typo.json: unknown Outer field\(s\) \['stepz'\]"):
        config.load(Outer, str(tmp_path / "typo.json"), presets)


OPTIONS = (
    config.Option("steps", "optimizer steps"),
    config.Option("scale", "a factor", flag="--factor", metavar="X"),
    config.Option("jit", "do not compile", flag="--no-jit", negate=True),
    config.Option("mode", "how", choices=("fast", "slow")),
)


def test_flags_come_from_fields_with_their_type_default_and_help():
    parser = argparse.ArgumentParser(prog="x")
    config.add_options(parser, Outer, OPTIONS)
    assert config.from_options(Outer, parser.parse_args([]), OPTIONS) == Outer()
    args = parser.parse_args(["--steps", "3", "--factor", "0.25", "--no-jit", "--mode", "slow"])
    assert (args.steps, args.factor, args.no_jit) == (3, 0.25, True)  # dest follows the flag
    assert config.from_options(Outer, args, OPTIONS, names=("n",)) == Outer(
        steps=3, scale=0.25, jit=False, mode="slow", names=("n",)
    )
    text = " ".join(parser.format_help().split())
    assert "--factor X a factor" in text and "--no-jit do not compile" in text and "{fast,slow}" in text
    defaults = {action.dest: action.default for action in parser._actions}
    assert (defaults["steps"], defaults["factor"], defaults["no_jit"]) == (10, 1.0, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["--steps", "many"])  # argparse's one-line usage error names --steps
    with pytest.raises(TypeError, match="defaults to True"):
        config.add_options(argparse.ArgumentParser(), Outer, [config.Option("steps", "s", negate=True)])


def test_katib_options_from_a_kfp_dict_render_whole_numbers():
    from waveforms import tuning

    options = config.from_dict(tuning.ExperimentOptions, {"steps": 300.0, "eval_every": 100.0, "gpus_per_trial": 1.0})
    rendered = json.dumps(tuning.render_experiment(options))  # tuning.ExperimentOptions(steps=300.0) gives "300.0"
    assert '"--steps", "300"' in rendered and '"--eval-every", "100"' in rendered and "300.0" not in rendered
    with pytest.raises(ValueError, match=r"unknown ExperimentOptions field\(s\) \['trials'\]"):
        config.from_dict(tuning.ExperimentOptions, {"trials": 3}, "katib")
