"""Command lines generated from config dataclasses: one source of defaults, shown in ``--help``.

Every field of a (nested) config dataclass becomes one flag, tyro style::

    steps: int = 7000                     ->  --steps N            (default: 7000)
    loss: LossConfig  (feature_weight)    ->  --loss.feature-weight X
    densify.enabled: bool = True          ->  --densify.enabled / --no-densify.enabled
    method: Literal["a", "b"] = "a"       ->  --method {a,b}
    background: tuple[float, ...]         ->  --background X [X ...]

The help text of a field is its ``field(metadata={"help": ...})`` or else the ``# comment`` written on
(or directly above) its line in the class body. A command may register several sections (its run
options and its method config); their top-level field names share one namespace, which is also the
layout of ``--config FILE.json`` and of the ``config.json`` saved beside every run.

Resolution order (later wins): dataclass defaults < ``--config`` file < ``--preset`` < flags given on
the command line. Flags carry ``argparse.SUPPRESS`` defaults, so only what the user typed overrides
the file; ``--help`` shows the dataclass default instead.

Presets are partial config dicts (the same nested layout as a config file) defined next to the config
dataclass, e.g. ``{"quick": {"steps": 150, "densify": {"refine_every": 12}}}``. A list of nested
configs (``stages``) is merged element by element when a partial list of the same length is given.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import enum
import functools
import hashlib
import inspect
import json
import linecache
import logging
import os
import pathlib
import re
import types
import typing
from typing import Any, Literal, Union

from distillcore.serialization import read_json_object, write_json_atomic

_DEST = "cfg."  # argparse dest prefix of generated flags: "cfg.loss.feature_weight"
_SECTIONS = "_config_sections"
_PRESETS = "_config_presets"


# --------------------------------------------------------------------------------------------- help
def field_help(cls: type) -> dict[str, str]:
    """Field name -> help text: ``metadata["help"]``, else the comment on the field's line (or the
    comment lines right above it) in the class source. Empty where neither exists."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's comment replaces its base's
        if dataclasses.is_dataclass(klass):
            comments.update(_source_comments(klass))
    out = {}
    for f in dataclasses.fields(cls):
        out[f.name] = f.metadata.get("help") or comments.get(f.name, "")
    return out


@functools.lru_cache(maxsize=None)
def _class_spans(filename: str) -> dict[str, tuple[int, int]]:
    """Qualified class name -> (first, last) line of its body, from one parse of the module
    (``inspect.getsource`` re-parses the whole module for every class: slow for a dozen sections)."""
    source = "".join(linecache.getlines(filename))
    spans: dict[str, tuple[int, int]] = {}

    def visit(node, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                spans[prefix + child.name] = (child.lineno, child.end_lineno)
                visit(child, prefix + child.name + ".")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, prefix + child.name + ".<locals>.")
    try:
        visit(ast.parse(source), "")
    except SyntaxError:
        pass
    return spans


@functools.lru_cache(maxsize=None)
def _source_comments(cls: type) -> dict[str, str]:
    try:
        filename = inspect.getsourcefile(cls)
    except TypeError:
        return {}
    span = _class_spans(filename).get(cls.__qualname__) if filename else None
    if span is None:
        return {}
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in linecache.getlines(filename)[span[0]:span[1]]:
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"^\s+([A-Za-z_]\w*)\s*:[^#]*?(?:#\s*(.*))?$", line)
        if match and not stripped.startswith(("def ", "return ", "@")):
            comment = match.group(2) or " ".join(pending)
            if comment:
                comments.setdefault(match.group(1), comment.strip())
        pending = []
    return comments


# --------------------------------------------------------------------------------------------- types
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation naming a type-checking-only import: flag-less field
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _strip_optional(tp) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _none_or(convert):
    def parse(text: str):
        return None if text.lower() == "none" else convert(text)
    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def _bool_value(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _nested_list_item(tp) -> type | None:
    """The dataclass type of ``list[SomeConfig]`` / ``tuple[SomeConfig, ...]``, else None."""
    if typing.get_origin(tp) in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if len(args) == 1 and dataclasses.is_dataclass(args[0]):
            return args[0]
    return None


def _argument_spec(tp, default) -> dict[str, Any] | None:
    """argparse keyword arguments (type / nargs / choices / action) for annotation ``tp``;
    None for types a flag cannot express (left to ``--config``)."""
    tp, optional = _strip_optional(tp)
    wrap = _none_or if optional else (lambda f: f)
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction} if not optional else {"type": wrap(_bool_value)}
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = list(typing.get_args(tp))
        kind = type(choices[0])
        return {"type": wrap(kind), "choices": choices + ([None] if optional else []),
                "metavar": "{" + ",".join(map(str, choices)) + "}"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        names = [m.name for m in tp]
        return {"type": wrap(lambda s: tp[s]), "choices": list(tp) + ([None] if optional else []),
                "metavar": "{" + ",".join(names) + "}"}
    if tp in (int, float, str) or tp is pathlib.Path:
        return {"type": wrap(tp), "metavar": _METAVARS[tp]}
    if origin in (tuple, list):
        args = typing.get_args(tp)
        if _nested_list_item(tp) is not None:
            return None
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(set(args)) != 1 or args[0] not in (int, float, str):
                return None
            return {"type": args[0], "nargs": len(args), "metavar": _METAVARS[args[0]]}
        item = args[0] if args else str
        if item not in (int, float, str):
            return None
        return {"type": _comma_list(item), "action": _Flatten, "metavar": _METAVARS[item],
                "nargs": "*" if optional or default == () or default == [] else "+"}
    return None


_METAVARS = {int: "N", float: "X", str: "STR", pathlib.Path: "PATH"}


def _comma_list(item: type):
    """Parses one token of a list flag: ``0.3`` or ``0.3,0.2`` (both spellings are accepted)."""
    def parse(text: str) -> list:
        try:
            return [item(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {item.__name__} values, got {text!r}") from None
    parse.__name__ = item.__name__
    return parse


class _Flatten(argparse.Action):
    """Stores the values of a list flag as one flat list (tokens may hold comma-separated values)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [v for token in values for v in token])


def _format_default(value) -> str:
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value)) if value else "(empty)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# --------------------------------------------------------------------------------------------- parser
def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type, prefix: str = "",
                         skip: tuple[str, ...] = (), group_title: str | None = None,
                         aliases: dict[str, str] | None = None) -> None:
    """Adds one flag per field of the dataclass ``config_cls`` (recursing into nested dataclasses).

    Args:
        parser: the (sub-)command's parser.
        config_cls: a dataclass whose fields all have defaults.
        prefix: dotted prefix of every flag (``"loss."`` gives ``--loss.feature-weight``).
        skip: top-level field names the command handles itself (e.g. positional arguments).
        group_title: title of the help section (default: the class name).
        aliases: dotted field path -> a second, shorter flag (``{"init.num_points": "--points"}``);
            for a bool, ``--x`` also gives ``--no-x``.
    """
    _register(parser, _SECTIONS, config_cls)
    group = parser.add_argument_group(group_title or config_cls.__name__)
    _add_fields(group, config_cls, config_cls(), prefix, set(skip), dict(aliases or {}), config_cls)


def _add_fields(group, cls: type, instance, prefix: str, skip: set[str], aliases: dict[str, str], root: type) -> None:
    hints, helps = _hints(cls), field_help(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        value = getattr(instance, f.name)
        path = prefix + f.name
        if dataclasses.is_dataclass(value):
            _add_fields(group, type(value), value, path + ".", set(), aliases, root)
            continue
        spec = _argument_spec(hints[f.name], value)
        flag = "--" + path.replace("_", "-")
        help_text = helps.get(f.name, "")
        if spec is None:  # e.g. a list of stage configs: set through --config
            continue
        default = f"(default: {_format_default(value)})"
        flags = [flag] + ([aliases[path]] if path in aliases else [])
        action = group.add_argument(*flags, dest=_DEST + path, default=argparse.SUPPRESS,
                                    help=f"{help_text} {default}".strip().replace("%", "%%"), **spec)
        action.config_section = root  # the section (top-level config class) the flag belongs to


def _register(parser: argparse.ArgumentParser, key: str, value) -> None:
    current = parser.get_default(key) or ()
    parser.set_defaults(**{key: (*current, value)})


def add_config_file_arguments(parser: argparse.ArgumentParser, presets: dict[str, dict] | None = None) -> None:
    """``--config FILE.json`` and, where ``presets`` are given, ``--preset NAME``."""
    parser.add_argument("--config", type=pathlib.Path, default=None, metavar="FILE.json",
                        help="JSON config (nested, the layout of a run's config.json); flags given here override it")
    if presets:
        parser.add_argument("--preset", choices=sorted(presets), default=None,
                            help="named schedule: " + "; ".join(
                                f"{name}: {_describe(values) or 'the defaults'}" for name, values in presets.items()))
        parser.set_defaults(**{_PRESETS: presets})


def _describe(values: dict, prefix: str = "") -> str:
    parts = []
    for key, value in values.items():
        if isinstance(value, dict):
            parts.append(_describe(value, prefix + key + "."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            parts.append(f"{prefix}{key}=" + "/".join(",".join(f"{k}={v}" for k, v in d.items()) for d in value))
        else:
            parts.append(f"{prefix}{key}={value}")
    return ", ".join(p for p in parts if p).replace("%", "%%")


# --------------------------------------------------------------------------------------------- resolve
def explicit_overrides(args: argparse.Namespace) -> dict:
    """The flags the user typed, as a nested dict (``{"loss": {"feature_weight": 2.0}}``)."""
    nested: dict = {}
    for key, value in vars(args).items():
        if not key.startswith(_DEST):
            continue
        *parents, leaf = key[len(_DEST):].split(".")
        node = nested
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return nested


def read_config_file(path: str | os.PathLike) -> dict:
    """A JSON config file as a dict (JSON only: nothing in it is executed)."""
    return read_json_object(path, what="config file")


def merge(base: dict, update: dict) -> dict:
    """Recursive merge of nested config dicts (``update`` wins); equal-length lists of dicts merge
    element by element, any other value replaces."""
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = merge(old, value)
        elif (isinstance(old, list) and isinstance(value, list) and len(old) == len(value)
              and all(isinstance(v, dict) for v in old + value)):
            out[key] = [merge(o, v) for o, v in zip(old, value)]
        else:
            out[key] = value
    return out


def _layers(args: argparse.Namespace, config_file) -> list[dict]:
    layers = []
    path = config_file if config_file is not None else getattr(args, "config", None)
    if path is not None:
        data = read_config_file(path)
        _check_known(data, getattr(args, _SECTIONS, ()) or (), str(path))
        layers.append(data)
    preset = getattr(args, "preset", None)
    if preset is not None:
        layers.append(getattr(args, _PRESETS)[preset])
    layers.append(explicit_overrides(args))
    return layers


def _check_known(data: dict, sections, where: str) -> None:
    if not sections:
        return
    known = {f.name for cls in sections for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown config key {unknown[0]!r} (known: {', '.join(sorted(known))})")


def config_from_args(config_cls: type, args: argparse.Namespace, config_file=None):
    """The resolved ``config_cls``: defaults, then the ``--config`` file, the ``--preset``, then the
    flags given on the command line (keys of other sections of the same command are ignored here).

    Raises:
        ValueError: an unknown key or a value of the wrong type, naming its dotted path.
    """
    names = {f.name for f in dataclasses.fields(config_cls)}
    data = to_dict(config_cls())
    for layer in _layers(args, config_file):
        data = merge(data, {k: v for k, v in layer.items() if k in names})
    return build_config(config_cls, data)


def to_dict(config) -> dict:
    """A config dataclass as a JSON-ready nested dict (tuples become lists, enums their names)."""
    def convert(value):
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, enum.Enum):
            return value.name
        if isinstance(value, pathlib.PurePath):
            return str(value)
        return value
    return convert(config)


def build_config(config_cls: type, data: dict, path: str = ""):
    """``config_cls`` from a nested dict, strictly: unknown keys and mistyped values are errors naming
    their dotted path; missing keys keep the dataclass defaults; ``validate()`` runs if defined."""
    if not isinstance(data, dict):
        raise ValueError(f"config key {path.rstrip('.') or config_cls.__name__!r} must be an object, "
                         f"got {type(data).__name__}")
    hints = _hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown config key {path + unknown[0]!r} (known in "
                         f"{path.rstrip('.') or config_cls.__name__}: {', '.join(fields)})")
    kwargs = {name: _convert(hints[name], value, path + name) for name, value in data.items()}
    missing = [name for name, f in fields.items() if name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"config key {path + missing[0]!r} is required")
    config = config_cls(**kwargs)
    if callable(getattr(config, "validate", None)):
        config.validate()
    return config


def _convert(tp, value, path: str):
    base, optional = _strip_optional(tp)
    if value is None:
        if optional or tp is Any:
            return None
        raise ValueError(f"config key {path!r} must not be null")
    if dataclasses.is_dataclass(base):
        return build_config(base, value, path + ".")
    item = _nested_list_item(base)
    if item is not None:
        if not isinstance(value, list):
            raise ValueError(f"config key {path!r} must be a list, got {type(value).__name__}")
        out = [build_config(item, v, f"{path}[{i}].") for i, v in enumerate(value)]
        return tuple(out) if typing.get_origin(base) is tuple else out
    origin = typing.get_origin(base)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key {path!r} must be a list, got {type(value).__name__}")
        return tuple(value) if origin is tuple else list(value)
    if origin is Literal:
        if value not in typing.get_args(base):
            raise ValueError(f"config key {path!r} must be one of {list(typing.get_args(base))}, got {value!r}")
        return value
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return value if isinstance(value, base) else base[value]
    if base is bool and not isinstance(value, bool):
        raise ValueError(f"config key {path!r} must be true or false, got {value!r}")
    if base is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"config key {path!r} must be an integer, got {value!r}")
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config key {path!r} must be a number, got {value!r}")
        return float(value)
    if base is str and not isinstance(value, str):
        raise ValueError(f"config key {path!r} must be a string, got {value!r}")
    if base is pathlib.Path:
        return pathlib.Path(value)
    return value


# --------------------------------------------------------------------------------------------- runs
def save_resolved_config(config, out_dir: str | os.PathLike, name: str = "config.json", **sections) -> pathlib.Path:
    """Writes the resolved config (a dataclass, or a dict) as ``OUT/config.json``, atomically; extra
    ``sections`` (other dataclasses or values of the same command) are merged at the top level, so the
    file can be passed back as ``--config``."""
    data = to_dict(config) if not isinstance(config, dict) else dict(config)
    for key, value in sections.items():
        data[key] = to_dict(value)
    path = pathlib.Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)
    return path


# --------------------------------------------------------------------------------------------- common run options
@dataclasses.dataclass
class RunOptions:
    """Options every long-running command shares (not part of the method's config)."""
    threads: int | None = None  # CPU threads for torch and the native OpenMP kernels (None: all cores)
    progress: bool = True  # tqdm progress bars (--no-progress hides them)
    verbose: bool = False  # debug messages of the distillkit loggers
    quiet: bool = False  # no progress bars, and only warnings and errors from the distillkit loggers

    def validate(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--threads``, ``--progress/--no-progress``, ``--verbose``, ``--quiet``."""
    add_config_arguments(parser, RunOptions, group_title="run options")


@dataclasses.dataclass
class DistOptions:
    """How many processes train together (:mod:`distillcore.dist`); not part of the method's config."""
    nproc: int = 1  # local processes (ranks) to train with; under torchrun the job's ranks are used instead
    # = distillcore.dist.DEFAULT_TIMEOUT_S, a literal so that `--help` does not import torch (a test checks it)
    dist_timeout: float = 300.0  # seconds a rank waits for the others (rendezvous, each collective) before failing

    def validate(self) -> None:
        if isinstance(self.nproc, bool) or not isinstance(self.nproc, int) or self.nproc < 1:
            raise ValueError(f"--nproc must be a positive number of processes, got {self.nproc}")
        if not self.dist_timeout > 0:
            raise ValueError(f"--dist-timeout must be > 0 seconds, got {self.dist_timeout}")


@dataclasses.dataclass
class ViewDistOptions(DistOptions):
    """:class:`DistOptions` of trainers that render camera views (Gaussian fields): each step trains on
    ``ranks x views_per_rank`` views, so the learning rates scale with that batch."""
    views_per_rank: int = 1  # training views each rank renders per step (ranks x this <= the training views)

    def validate(self) -> None:
        super().validate()
        if isinstance(self.views_per_rank, bool) or not isinstance(self.views_per_rank, int) or self.views_per_rank < 1:
            raise ValueError(f"--views-per-rank must be a positive number of views, got {self.views_per_rank}")


def add_dist_options(parser: argparse.ArgumentParser, options: type[DistOptions] = DistOptions) -> None:
    """``--nproc N`` and ``--dist-timeout S`` (:class:`DistOptions`, or a subclass's flags too, e.g.
    :class:`ViewDistOptions`) for commands that train on several ranks."""
    add_config_arguments(parser, options, group_title="distributed options")


def apply_run_options(args: argparse.Namespace) -> RunOptions:
    """Resolves :class:`RunOptions`, sets the thread count (torch and OpenMP alike) and logging."""
    options = config_from_args(RunOptions, args)
    if options.quiet:
        options.progress = False
    set_threads(options.threads)
    configure_logging(logging.DEBUG if options.verbose else logging.WARNING if options.quiet else logging.INFO)
    return options


def set_threads(threads: int | None) -> int:
    """Uses ``threads`` CPU threads (None: all cores) in torch's intra-op pool and in the native
    rasterizer's OpenMP pool.

    The native extension links ``libgomp.so.1``, which resolves to the copy torch's wheel already
    loaded: one OpenMP runtime, so ``torch.set_num_threads`` (``omp_set_num_threads`` on the calling
    thread, which runs the native kernels too) covers both. ``OMP_NUM_THREADS`` is set as well for
    worker processes started later. Returns the count used.
    """
    import torch

    count = threads or os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = str(count)
    torch.set_num_threads(count)
    return count


def parse_assignments(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings (a benchmark's ``--set``) as ``{KEY: VALUE}``, each VALUE read as JSON, else kept as
    text (``weight=3`` -> 3, ``side=cameras`` -> "cameras"). A JSON object is spelt out as dotted keys
    (``radiance={"steps": 9}`` -> ``{"radiance.steps": 9}``), so that one setting has one key whichever way it
    is written and a caller that looks at the keys sees every field that is set.

    Raises:
        ValueError: an item without ``=``.
    """
    out: dict[str, object] = {}

    def put(key: str, value) -> None:
        if isinstance(value, dict) and value:
            for name, inner in value.items():
                put(f"{key}.{name}", inner)
        else:
            out[key] = value

    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            put(key, json.loads(raw))
        except json.JSONDecodeError:
            out[key] = raw
    return out


TAG_TEXT_LENGTH = 120  # folder names stay well under the 255 bytes file systems allow


def assignments_tag(assignments: dict[str, object]) -> str:
    """A folder name for runs made with these :func:`parse_assignments` settings, so they never overwrite the
    default runs: ``set_KEY=VALUE_...``. A hash of the settings is appended wherever the text alone could be
    ambiguous: characters a folder name cannot hold were dropped (``[64, 32]`` and ``6432``), a value holds the
    separators ``_`` or ``=``, or the text was cut to ``TAG_TEXT_LENGTH`` characters."""
    text = "_".join(f"{k}={v}" for k, v in sorted(assignments.items()))
    kept = re.sub(r"[^A-Za-z0-9._=-]", "", text)[:TAG_TEXT_LENGTH]
    if kept != text or any(c in str(v) for v in assignments.values() for c in "_="):
        kept += "_" + hashlib.sha1(json.dumps(assignments, sort_keys=True).encode()).hexdigest()[:8]
    return "set_" + kept


def set_dotted(config, key: str, value, option: str | None = None) -> None:
    """Sets the field at the dotted path ``key`` (``pointdistiller.weight``) of a nested config dataclass.

    ``value`` is converted to the field's type as a config file's value is (:func:`build_config`: a number for
    a float, a tuple for a tuple, an enum from its name); a dict for a sub-config (a list of dicts for a list of
    them) is merged into its current value (:func:`merge`), so ``pointdistiller={"weight": 3}`` is
    ``pointdistiller.weight=3``.

    Raises:
        ValueError: a part of the path that is not a field, or a value the field's type does not take, named
            with the config's class and with ``option`` (what the user typed, default ``key``).
    """
    *path, name = key.split(".")
    where = f"--set {option or key}"
    target = config
    for part in path:
        if not dataclasses.is_dataclass(target) or not hasattr(target, part):
            raise ValueError(f"{where}: {type(config).__name__} has no {'.'.join(path)!r}")
        target = getattr(target, part)
    if not dataclasses.is_dataclass(target) or name not in {f.name for f in dataclasses.fields(target)}:
        raise ValueError(f"{where}: {type(target).__name__} has no field {name!r}")
    # a raw JSON value would put a dict where a sub-config belongs, or text where a number does, and fail
    # only when the run uses it
    value = merge({name: to_dict(getattr(target, name))}, {name: value})[name]
    try:
        value = _convert(_hints(type(target))[name], value, option or key)
    except (ValueError, KeyError) as error:  # KeyError: not a member of an enum field
        raise ValueError(f"{where}: {error.args[0] if error.args else error}") from None
    setattr(target, name, value)


def preload_environment() -> None:
    """Process settings that torch's libraries read once, when they are loaded, so this must run before torch
    is imported (the console entry points call it first; their command groups import torch lazily). A
    variable the user set is kept.

    - ``OMP_WAIT_POLICY=PASSIVE``: OpenMP threads sleep rather than spin while they wait at a barrier, for
      the torch and native kernels alike (they share torch's libgomp). With the default active wait, each
      thread busy-spins between parallel regions; on a machine whose cores are busy with other processes,
      the spinning threads take the time slices the working ones need. Measured here (2 cores, load
      average 7-11, Feature 3DGS steps, native backend): 2 threads 610-1050 ms/step active vs 108-150
      ms/step passive; 1 thread 130-150 ms/step either way.
    - ``THP_MEM_ALLOC_ENABLE=1``: torch's CPU allocator asks for transparent huge pages for buffers of 2 MB
      and more. glibc serves a buffer over its mmap threshold (32 MB at the most) with a fresh ``mmap`` and
      returns it on free, so every large frame (a 512^2 map of 112 feature channels is 117 MB) is faulted
      in again 4 KB at a time. Measured here (one thread, ``docs/rasterizer.md``): allocating and filling
      117 MB 80 -> 23 ms; a 512^2 render of 112 feature channels 306 -> 220 ms.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        return f"distillkit: {level}{record.getMessage()}"


def configure_logging(level: int = logging.INFO) -> logging.Logger:
    """Sends the ``distillkit`` logger hierarchy to stderr as ``distillkit: message`` lines
    (``distillkit: warning: message`` from warnings up)."""
    logger = logging.getLogger("distillkit")
    logger.setLevel(level)
    if not any(getattr(h, "_distillkit", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(_LineFormatter())
        handler._distillkit = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return logger


__all__ = ["add_config_arguments", "add_config_file_arguments", "add_dist_options", "add_run_options",
           "apply_run_options", "DistOptions", "ViewDistOptions",
           "build_config", "config_from_args", "configure_logging", "explicit_overrides", "field_help", "merge",
           "parse_assignments", "assignments_tag", "set_dotted", "preload_environment", "read_config_file",
           "RunOptions", "save_resolved_config", "set_threads", "to_dict"]
