"""`vasa train motion|face|capp|lipsync`: the options are the trainer config's fields (`vasa.train.options`),
each with help, its default said once (in the dataclass) and shown by --help; options left out take it."""

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from vasa.cli import build_parser, main
from vasa.train.face import FaceTrainConfig
from vasa.train.judge import JudgeTrainConfig
from vasa.train.motion import TrainConfig
from vasa.train.options import Options, add_config_options, flag_of, is_option, option

CONFIGS = {"motion": TrainConfig, "face": FaceTrainConfig, "capp": JudgeTrainConfig, "lipsync": JudgeTrainConfig}
NOT_OPTIONS = {  # fields the command sets, or that the command line does not offer
    "motion": set(), "face": set(),
    **dict.fromkeys(["capp", "lipsync"], {"kind", "weight_decay", "min_lr_ratio", "ema_decay"}),
}
DEFAULT_TEXT = {("capp", "preset"): "the kind's", ("lipsync", "preset"): "the kind's"}  # "" reads as this


def trainer_parser(trainer: str) -> argparse.ArgumentParser:
    """The parser of `vasa train TRAINER`, with its options."""
    subcommands = build_parser()._subparsers._group_actions[0]
    parser = subcommands.choices["train"]._subparsers._group_actions[0].choices[trainer]
    parser.format_help()  # the options are added on first use
    return parser


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.dest != "help"}


def help_text(trainer: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "1000")  # one line an option: argparse wraps no help
    with pytest.raises(SystemExit):
        main(["train", trainer, "--help"])
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("trainer", CONFIGS)
def test_every_config_field_meant_as_an_option_is_one_with_help(trainer):
    config = CONFIGS[trainer]
    actions = options(trainer_parser(trainer))
    assert {f.name for f in dataclasses.fields(config) if not is_option(f)} == NOT_OPTIONS[trainer]
    assert set(actions) == {f.name for f in dataclasses.fields(config)} - NOT_OPTIONS[trainer]
    for field in dataclasses.fields(config):
        if field.name in actions:
            assert actions[field.name].option_strings == [flag_of(field)]
            assert field.metadata.get("help"), f"{config.__name__}.{field.name} has no help"
            assert actions[field.name].required == (field.default is dataclasses.MISSING)


@pytest.mark.parametrize("trainer", CONFIGS)
def test_help_shows_each_dataclass_default(trainer, capsys, monkeypatch):
    text = help_text(trainer, capsys, monkeypatch)
    config, shown = CONFIGS[trainer], 0
    for field in dataclasses.fields(config):
        if not is_option(field):
            assert flag_of(field) not in text
            continue
        help_ = " ".join(field.metadata["help"].split())
        assert f"{flag_of(field)} " in text
        if field.default in (dataclasses.MISSING, None, ()) or isinstance(field.default, bool):
            assert re.search(re.escape(help_) + r"(?! \(default)", text), field.name  # no default said
        else:
            default = DEFAULT_TEXT.get((trainer, field.name), str(field.default))
            assert f"{help_} (default: {default})" in text, field.name
            shown += 1
    assert shown >= 10


@pytest.mark.parametrize("trainer", CONFIGS)
def test_options_left_out_take_the_defaults_and_each_option_gives_its_type(trainer):
    parser, config = build_parser(), CONFIGS[trainer]
    args = parser.parse_args(["train", trainer, "--data", "d", "--out", "o"])
    given = {f.name for f in dataclasses.fields(config) if hasattr(args, f.name)}
    assert given == {"data", "out"} | ({"kind"} if config is JudgeTrainConfig else set())
    argv = ["train", trainer]
    for field in dataclasses.fields(config):
        if not is_option(field):
            continue
        if isinstance(field.default, bool):
            argv.append(flag_of(field))
        elif field.default is dataclasses.MISSING or field.default is None:
            argv += [flag_of(field), f"{field.name}.x"]
        elif field.default == ():
            argv += [flag_of(field), "a", "b"]
        else:
            argv += [flag_of(field), str(field.default)]
    args = parser.parse_args(argv)
    for field in dataclasses.fields(config):
        if not is_option(field):
            continue
        value = getattr(args, field.name)
        if isinstance(field.default, bool):
            assert value is (not field.default)
        elif field.default is dataclasses.MISSING or field.default is None:
            assert value == Path(f"{field.name}.x")
        elif field.default == ():
            assert value == ["a", "b"]
        else:
            assert value == field.default and type(value) is type(field.default), field.name


def test_a_field_without_help_is_no_option():
    @dataclasses.dataclass(frozen=True)
    class Config:
        data: Path = option(help="input")
        hidden: int = option(3, cli=False)
        count: int = 2

    with pytest.raises(TypeError, match="Config.count"):
        add_config_options(argparse.ArgumentParser(), Config)

    @dataclasses.dataclass(frozen=True)
    class Good:
        data: Path = option(help="input")
        hidden: int = option(3, cli=False)
        count: int = option(2, "how many")
        names: tuple[str, ...] = option((), "some names", metavar="NAME")
        on: bool = option(True, "switch it off")

    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    add_config_options(parser, Good)
    assert vars(parser.parse_args(["--data", "x"])) == {"data": Path("x")}
    assert vars(parser.parse_args(["--data", "x", "--count", "5", "--names", "a", "--no-on"])) == {
        "data": Path("x"), "count": 5, "names": ["a"], "on": False}
    assert "how many (default: 2)" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "x", "--hidden", "1"])


def test_a_subclass_gives_inherited_fields_its_defaults_and_help_as_class_keywords():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Base(Options):
        data: Path = option(help="input")
        steps: int = option(help="how many steps")
        seed: int = option(0, "seed")

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Trainer(Base, steps=100, seed=option(3, "seed of everything")):
        extra: bool = option(False, "an own field")

    fields = {f.name: f for f in dataclasses.fields(Trainer)}
    assert list(fields) == ["data", "steps", "seed", "extra"]  # a restated field keeps its place
    assert (fields["steps"].default, fields["steps"].metadata["help"]) == (100, "how many steps")
    assert (fields["seed"].default, fields["seed"].metadata["help"]) == (3, "seed of everything")
    assert Trainer(data=Path("d")) == Trainer(data=Path("d"), steps=100, seed=3, extra=False)
    assert dataclasses.fields(Base)[1].default is dataclasses.MISSING  # the base keeps its own
    parser = argparse.ArgumentParser()
    add_config_options(parser, Trainer)
    assert "seed of everything (default: 3)" in parser.format_help()
    assert parser.parse_args(["--data", "d", "--steps", "5"]).steps == 5

    with pytest.raises(TypeError, match="no field stpes"):
        class Typo(Base, stpes=1):
            pass
    with pytest.raises(TypeError, match="both declared and given"):
        class Twice(Base, seed=1):
            seed: int = option(2, "seed")
