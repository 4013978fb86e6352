"""One typed config per job: its flags, Flex Template parameters and docs table come from it.

A job's config is a dataclass; a field that is a flag carries ``option(...)`` metadata (flag
name, help, choices, metavar; the default is the field's own), and a field holding a nested
config (``FetchConfig``, ``DetectConfig`` ...) carries ``group(Cls, name=opt(...), ...)``, naming
the nested fields that are flags (their defaults stay in the nested class: written once).

    add_arguments(parser, CrawlConfig)         # the argparse arguments
    config_from_args(CrawlConfig, namespace)   # the config back (ValueError: a clear message)
    to_argv(CrawlConfig(urls=..., out=...))    # the flags a user would type for that config
    template_metadata(CrawlConfig, name, text) # a Flex Template metadata document
    flags_table(CrawlConfig)                   # a markdown table for docs/flags.md

Rules the flags follow: ``--field-name`` unless ``flag=`` says otherwise; a bool field is a
switch (``store_true``, or ``store_false`` under a ``--no-...`` flag when it defaults to true);
a list or tuple field is a repeatable flag; a field with no default is a required flag. Whatever
our parser leaves over goes to Beam (``core.beam.split_args``).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable

REQUIRED = object()  # the default of a field without one: its flag must be given
GCS_REGEX = r"^gs:\/\/[^\n\r]+$"  # a template parameter that must be a gs:// path


@dataclass(frozen=True)
class Opt:
    """How one config field is a flag."""

    help: str = ""
    flag: str | None = None  # default: --field-name
    aliases: tuple[str, ...] = ()
    choices: tuple | None = None
    metavar: str | None = None
    parse: Callable[[Any], Any] | None = None  # flag value -> field value (e.g. read a file)
    unparse: Callable[[Any], Any] | None = None  # field value -> flag value, where ``parse`` has an inverse
    shown: Callable[[Any], Any] | None = None  # field default -> flag default (e.g. bytes -> MB)
    label: str | None = None  # Flex Template label (default: from the flag name)
    gcs: bool = False  # a path that must be gs:// in a Flex Template
    template: bool = True  # a Flex Template parameter (False: local runs and tests only)
    repeat: bool = False  # repeatable whatever the field's type (``parse`` makes the field value)


@dataclass(frozen=True)
class Group:
    """A nested config field whose named fields are flags."""

    cls: type
    options: dict[str, Opt]


def opt(help: str = "", **kwargs) -> Opt:  # noqa: A002 - argparse's word
    return Opt(help=help, **kwargs)


def option(default: Any = MISSING, *, default_factory: Any = MISSING, help: str = "",  # noqa: A002
           **kwargs) -> Any:
    """A dataclass field that is a flag (no ``default``: a required flag)."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"wit": Opt(help=help, **kwargs)})


def group(cls: type, **options: Opt) -> Any:
    """A dataclass field holding ``cls()``, with the fields named in ``options`` as flags."""
    return dataclasses.field(default_factory=cls, metadata={"wit": Group(cls, options)})


@dataclass(frozen=True)
class Flag:
    """One flag as the parser, the template and the docs see it."""

    path: tuple[str, ...]  # field names from the job config down
    names: tuple[str, ...]  # --flag and its aliases
    kind: str  # value, switch, repeat
    type: type
    default: Any  # the field's default (REQUIRED when it has none)
    opt: Opt

    @property
    def dest(self) -> str:
        return self.names[0][2:].replace("-", "_")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def flag_default(self) -> Any:
        if self.required or self.kind == "repeat":
            return None
        return self.opt.shown(self.default) if self.opt.shown else self.default


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:
        return field.default_factory()
    return REQUIRED


def _kind_and_type(hint: Any, default: Any) -> tuple[str, type]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None: a flag of type X
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (list, tuple):
        return "repeat", args[0] if args and args[0] is not Ellipsis else str
    if hint is bool:
        return "switch", bool
    if hint in (int, float, str):
        return "value", hint
    return "value", type(default) if default not in (None, REQUIRED) else str


def _flag(path: tuple[str, ...], o: Opt, hint: Any, default: Any) -> Flag:
    kind, kind_type = ("repeat", str) if o.repeat else _kind_and_type(hint, default)
    name = o.flag or "--" + path[-1].replace("_", "-")
    if kind == "switch" and default is True and not name.startswith("--no-"):
        raise TypeError(f"{'.'.join(path)}: a switch that defaults to true needs a --no-... flag, not {name}")
    return Flag(path, (name, *o.aliases), kind, kind_type, default, o)


def flags_of(cls: type) -> list[Flag]:
    """Every flag of a job config, in field order (nested groups in their options' order)."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        meta = field.metadata.get("wit")
        if isinstance(meta, Opt):
            found.append(_flag((field.name,), meta, hints[field.name], _field_default(field)))
        elif isinstance(meta, Group):
            inner_hints = typing.get_type_hints(meta.cls)
            inner = {f.name: f for f in dataclasses.fields(meta.cls)}
            for name, o in meta.options.items():
                found.append(_flag((field.name, name), o, inner_hints[name], _field_default(inner[name])))
    return found


def add_arguments(parser, cls: type) -> None:
    """The argparse arguments of ``cls``'s flags."""
    for flag in flags_of(cls):
        kwargs: dict[str, Any] = {"dest": flag.dest, "help": flag.opt.help or None}
        if flag.kind == "switch":
            kwargs.update(action="store_false" if flag.default is True else "store_true", default=flag.default)
        else:
            if flag.kind == "repeat":
                kwargs["action"] = "append"
            if flag.type is not str:
                kwargs["type"] = flag.type
            kwargs.update(default=flag.flag_default, metavar=flag.opt.metavar)
            if flag.opt.choices is not None:
                kwargs["choices"] = flag.opt.choices
        parser.add_argument(*flag.names, **kwargs)


def missing_message(missing: list[str]) -> str:
    return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required"


def config_from_args(cls: type, args: argparse.Namespace):
    """The config of ``cls`` from parsed flags; a missing required flag or a bad value raises
    ``ValueError`` with a message naming the flag."""
    flags = flags_of(cls)
    missing = [flag.names[0] for flag in flags if flag.required and not getattr(args, flag.dest)]
    if missing:
        raise ValueError(missing_message(missing))
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for flag in flags:
        value = getattr(args, flag.dest)
        if flag.kind == "repeat":
            value = list(value or [])
        if flag.opt.parse is not None:
            value = flag.opt.parse(value)
        elif flag.kind == "repeat" and isinstance(flag.default, tuple):
            value = tuple(value)
        if len(flag.path) == 1:
            top[flag.path[0]] = value
        else:
            nested.setdefault(flag.path[0], {})[flag.path[1]] = value
    hints = {f.name: f.metadata["wit"].cls for f in dataclasses.fields(cls) if isinstance(f.metadata.get("wit"), Group)}
    for name, values in nested.items():
        top[name] = hints[name](**values)
    return cls(**top)


def parse_config(cls: type, argv: list[str]):
    """The config of ``cls`` from our flags alone (tests, tools): no Beam flag is accepted."""
    parser = argparse.ArgumentParser(allow_abbrev=False)
    add_arguments(parser, cls)
    try:
        return config_from_args(cls, parser.parse_args(argv))
    except ValueError as exc:
        parser.error(str(exc))


def to_argv(config) -> list[str]:
    """The flags that give ``config`` back through the parser, its defaults left out: how tests and
    the demo build a config in code and still show (or hand on) the command line a user would type.
    A field read through ``parse`` without an ``unparse`` (a file's contents) cannot be written back
    and raises ``ValueError`` naming the flag."""
    argv: list[str] = []
    for flag in flags_of(type(config)):
        value = config
        for name in flag.path:
            value = getattr(value, name)
        if not flag.required and value == flag.default:
            continue
        name = flag.names[0]
        if flag.opt.parse is not None and flag.opt.unparse is None:
            raise ValueError(f"{name}: this config holds what the flag's value was read into; give {name} on the "
                             "command line instead")
        if flag.opt.unparse is not None:
            value = flag.opt.unparse(value)
        elif flag.opt.shown is not None:
            value = flag.opt.shown(value)
        if flag.kind == "switch":
            argv.append(name)  # a switch differs from its default only one way
        elif flag.kind == "repeat":
            for item in value:
                argv += [name, str(item)]
        else:
            argv += [name, str(value)]
    return argv


def command_line(prog: str, config) -> str:
    """``prog`` and ``config``'s flags, quoted for a shell."""
    import shlex

    return shlex.join([*prog.split(), *to_argv(config)])


# -- generated documents -------------------------------------------------------------------------
def _label(flag: Flag) -> str:
    return flag.opt.label or flag.names[0][2:].replace("-", " ").capitalize()


def template_metadata(cls: type, name: str, description: str) -> dict:
    """A Flex Template metadata document: one parameter per flag (underscore names, as Dataflow
    passes them; ``infra/dataflow/flex/launch.py`` maps them back onto the flags)."""
    parameters = []
    for flag in flags_of(cls):
        if not flag.opt.template:
            continue
        parameter = {"name": flag.dest, "label": _label(flag), "helpText": flag.opt.help or _label(flag),
                     "isOptional": not flag.required}
        if flag.opt.gcs:
            parameter["regexes"] = [GCS_REGEX]
        parameters.append(parameter)
    return {"name": name, "description": description, "parameters": parameters}


def _shown(flag: Flag) -> str:
    if flag.required:
        return "required"
    if flag.kind == "switch":
        return "switch"
    if flag.kind == "repeat":
        return "repeatable"
    value = flag.flag_default
    return "" if value is None else (f"{value:_}" if isinstance(value, int) else str(value))


def flags_table(cls: type) -> str:
    """A markdown table of ``cls``'s flags: flag, default, help."""
    rows = ["| flag | default | meaning |", "| --- | --- | --- |"]
    for flag in flags_of(cls):
        names = ", ".join(f"`{name}`" for name in flag.names)
        choices = f" ({', '.join(map(str, flag.opt.choices))})" if flag.opt.choices else ""
        text = (flag.opt.help + choices).replace("|", "\\|")
        rows.append(f"| {names} | {_shown(flag)} | {text} |")
    return "\n".join(rows) + "\n"
