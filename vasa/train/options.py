"""A trainer's command-line options are its config dataclass' fields (`vasa train motion|face|capp|lipsync`):
a field gives its help in its metadata (`option`), and `add_config_options` makes the argparse option from
the field: its flag, type and help, with the default the dataclass says (written there only). Fields the
trainers share are declared once, in a base class (`vasa.train.common.RunConfig`); a trainer gives them its
defaults and help as class keywords (`Options`)."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def option(default=dataclasses.MISSING, help: str = "", *, cli: bool = True, choices: tuple | None = None,
           metavar: str | None = None, default_text: str | None = None):
    """A config field that is a command-line option (`flag_of`); `help` says what it is (the help shows the
    default after it); `default_text` says the default in words where its value would not; `cli=False`: a
    field with no option (the command sets it, or it is for the library only)."""
    metadata = {"cli": cli, "help": help, "choices": choices, "metavar": metavar, "default_text": default_text}
    return dataclasses.field(default=default, metadata={k: v for k, v in metadata.items() if v is not None})


class Options:
    """Base of a config dataclass whose subclasses give inherited fields their own default and help as class
    keywords, without declaring the fields again:

        @dataclass(frozen=True, kw_only=True)
        class TrainConfig(RunConfig, steps=100_000, seed=option(0, "seed of weights, windows and noise")):

    a plain value is the field's default (its help stays the base's); an `option(...)` is the field anew,
    default, help and all. The field keeps its type and its place among the fields."""

    def __init_subclass__(cls, **restated: object):
        super().__init_subclass__()
        if not restated:
            return
        inherited = {f.name: f for f in dataclasses.fields(cls)}  # the base dataclass' (cls is not one yet)
        base = next(b for b in cls.__mro__[1:] if dataclasses.is_dataclass(b))
        hints = typing.get_type_hints(base)
        annotations = cls.__dict__.get("__annotations__")
        if annotations is None:
            cls.__annotations__ = annotations = {}
        for name, value in restated.items():
            if name not in inherited:
                raise TypeError(f"{cls.__name__}({name}=...): {base.__name__} has no field {name}")
            if name in annotations:
                raise TypeError(f"{cls.__name__}.{name} is both declared and given as a class keyword")
            if isinstance(value, dataclasses.Field):
                default, metadata = value.default, value.metadata
            else:
                default, metadata = value, inherited[name].metadata
            annotations[name] = hints[name]
            setattr(cls, name, dataclasses.field(default=default, metadata=metadata, kw_only=inherited[name].kw_only))


def is_option(field: dataclasses.Field) -> bool:
    return field.metadata.get("cli", True)


def flag_of(field: dataclasses.Field) -> str:
    """--name-with-dashes; --no-name for a switch that is on by default."""
    return ("--no-" if field.default is True else "--") + field.name.replace("_", "-")


def default_text(field: dataclasses.Field) -> str | None:
    """How the help says the field's default; None where it says none (required, a switch, nothing given)."""
    if "default_text" in field.metadata:
        return field.metadata["default_text"]
    value = field.default
    if value is dataclasses.MISSING or value is None or isinstance(value, bool) or value == ():
        return None
    return str(value)


def add_config_options(parser: argparse.ArgumentParser, config_class: type) -> None:
    """An option per field of the dataclass `config_class` (fields with `cli=False` left out), in field order.
    A field without a default is a required option; a bool field a switch (`--name` turns a False default on,
    `--no-name` a True one off); a tuple field takes one or more values; `Path | None` takes a Path. The parser's own argument_default applies to options not given (`vasa train` leaves them
    out of the namespace, so the dataclass' default applies)."""
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        if not is_option(field):
            continue
        if not field.metadata.get("help"):
            raise TypeError(f"{config_class.__name__}.{field.name} is an option without help: give it "
                            "option(default, help) or option(default, cli=False)")
        kwargs = {"dest": field.name, "help": field.metadata["help"].replace("%", "%%")}
        kind = hints[field.name]
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:  # X | None
            kind = next(k for k in typing.get_args(kind) if k is not type(None))
        if field.default is dataclasses.MISSING:
            kwargs["required"] = True
        if kind is bool:
            kwargs["action"] = "store_false" if field.default else "store_true"
        else:
            if typing.get_origin(kind) is tuple:  # tuple[X, ...]: one or more values
                kind = typing.get_args(kind)[0]
                kwargs["nargs"] = "+"
            kwargs["type"] = kind
            for name in ("choices", "metavar"):
                if name in field.metadata:
                    kwargs[name] = field.metadata[name]
        shown = default_text(field)
        if shown is not None:
            kwargs["help"] += f" (default: {shown})"
        parser.add_argument(flag_of(field), **kwargs)

