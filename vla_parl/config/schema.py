"""Typed configs: every YAML file maps 1:1 onto a (nested) dataclass, validated before any heavy work.

- Unknown keys are errors naming the nearest valid key ("did you mean ...").
- Values are checked against the field's type (int, float, bool, str, Path, Optional, Literal, list/tuple,
  dict, nested dataclasses); ints are accepted for floats, nothing else is coerced silently.
- `key=value` overrides use dotted paths (`optim.lr=1e-4`) and YAML syntax for values.
- YAML 1.1 reads `no`/`off`/`yes`/`on` as booleans; where the field is a string (`run.mixed_precision=no`)
  the word is kept as written, where it is a bool it is the boolean.
- The resolved config is written back as YAML (`to_yaml`), which is all `--resume` needs.
- A key that moved or was retired keeps working: a config class lists it in `MOVED_KEYS` (old dotted key →
  new dotted key, both relative to the class) or `RETIRED_KEYS` (key → why it is ignored); `from_dict`
  rewrites or drops it with a `FutureWarning` that says what to write instead, so old YAML files, users'
  scripts and the saved configs of earlier runs load unchanged.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from vla_parl.errors import ConfigError
from vla_parl.utils.suggest import did_you_mean

__all__ = ["from_dict", "to_dict", "load_config", "apply_overrides", "parse_overrides", "to_yaml", "field_names",
           "OutOfRangeError", "check_range"]

T = TypeVar("T")


class _BoolWord(str):
    """A YAML boolean word (`no`, `On`, `true`, ...) kept as written until the field's type decides."""

    as_bool: bool

    def __new__(cls, word: str, as_bool: bool) -> "_BoolWord":
        obj = super().__new__(cls, word)
        obj.as_bool = as_bool
        return obj


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that reads booleans as `_BoolWord`s."""


def _construct_bool(loader: yaml.SafeLoader, node: yaml.Node) -> _BoolWord:
    return _BoolWord(node.value, yaml.SafeLoader.construct_yaml_bool(loader, node))


_ConfigLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


def _plain(value: Any) -> Any:
    """`value` with every `_BoolWord` turned into its boolean (for untyped and mapping values)."""
    if isinstance(value, _BoolWord):
        return value.as_bool
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass


class OutOfRangeError(ConfigError):
    """A config value outside its valid range. `key` is the field name; `from_dict` adds the section path."""

    def __init__(self, key: str, value: Any, valid: str) -> None:
        self.key, self.value, self.valid = key, value, valid
        super().__init__(self.message(key))

    def message(self, key: str) -> str:
        return f"{key}={self.value!r} is out of range: it must be {self.valid}"


def check_range(key: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, optional: bool = False) -> None:
    """Raise `OutOfRangeError` unless `low <= value <= high` (`<` with `low_open` / `high_open`).

    `optional`: None is valid too. For use in a config dataclass's `__post_init__` with the field's name
    as `key`: `from_dict` prefixes it with the section path (`critic_optim.lr`)."""
    if value is None and optional:
        return
    ok = value is not None and not (isinstance(value, float) and value != value)      # NaN is never in range
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is not None and high is not None:
            valid = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            valid = f"{'>' if low_open else '>='} {low:g}"
        else:
            valid = f"{'<' if high_open else '<='} {high:g}"
        raise OutOfRangeError(key, value, valid + (" (or null)" if optional else ""))


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _check_value(value: Any, tp: Any, where: str) -> Any:
    """Validate (and build, for dataclasses) `value` against type `tp`; raise ConfigError naming `where`."""
    origin = get_origin(tp)
    if tp is Any:
        return _plain(value)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_value(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        if isinstance(value, _BoolWord):
            value = str(value) if str(value) in get_args(tp) else value.as_bool
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {type(value).__name__} {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_check_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return _plain(dict(value))
    if isinstance(value, _BoolWord):
        value = str(value) if tp in (str, Path) else value.as_bool
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {type(value).__name__} {value!r}")
        return Path(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def _take(data: dict[str, Any], path: list[str]) -> tuple[bool, Any]:
    """Remove and return the value at `path` (found, value); copies the mappings on the way (the caller's
    mapping is not changed)."""
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            return False, None
        node[part] = node = dict(child)
    if path[-1] not in node:
        return False, None
    return True, node.pop(path[-1])


def _put(data: dict[str, Any], path: list[str], value: Any) -> Any:
    """Set `path` to `value` unless it is already set; returns the value that is there afterwards."""
    node = data
    for part in path[:-1]:
        child = node.get(part, {})
        if not isinstance(child, dict):
            return None
        node[part] = node = dict(child)
    return node.setdefault(path[-1], value)


def _migrate_keys(cls: type, data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """`data` with `cls.MOVED_KEYS` moved to their new place and `cls.RETIRED_KEYS` dropped, each with a
    FutureWarning; an old key set beside its new one to a different value is an error."""
    moved: dict[str, str] = getattr(cls, "MOVED_KEYS", {})
    retired: dict[str, str] = getattr(cls, "RETIRED_KEYS", {})
    if not moved and not retired:
        return data
    data = dict(data)
    for old, new in moved.items():
        found, value = _take(data, old.split("."))
        if not found:
            continue
        if _put(data, new.split("."), value) != value:
            raise ConfigError(f"'{prefix}{old}' is the old name of '{prefix}{new}', and both are set to different "
                              f"values: keep only '{prefix}{new}'")
        warnings.warn(f"config key '{prefix}{old}' has moved to '{prefix}{new}': write {prefix}{new}={value} "
                      "(the old key still works for now)", FutureWarning, stacklevel=4)
    for key, why in retired.items():
        found, _ = _take(data, key.split("."))
        if found:
            warnings.warn(f"config key '{prefix}{key}' is ignored ({why}): remove it", FutureWarning, stacklevel=4)
    return data


def _migrate_tree(cls: type, data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`_migrate_keys` at every level of `data` (a mapping for dataclass `cls`); `data` itself is not changed."""
    data = dict(_migrate_keys(cls, data, prefix))
    hints = get_type_hints(cls)
    for name, value in data.items():
        if isinstance(value, dict) and dataclasses.is_dataclass(hints.get(name)):
            data[name] = _migrate_tree(hints[name], value, f"{prefix}{name}.")
    return data


def _current_key(cls: type, key: str, prefix: str = "") -> str:
    """The dotted `key` of a `key=value` override with moved keys renamed (warning), at any level of `cls`."""
    for old, new in getattr(cls, "MOVED_KEYS", {}).items():
        if key == old or key.startswith(old + "."):
            warnings.warn(f"config key '{prefix}{old}' has moved to '{prefix}{new}': write {prefix}{new}=... "
                          "(the old key still works for now)", FutureWarning, stacklevel=4)
            key = new + key[len(old):]
            break
    head, dot, rest = key.partition(".")
    if dot and dataclasses.is_dataclass(cls):
        child = get_type_hints(cls).get(head)
        if dataclasses.is_dataclass(child):
            return f"{head}.{_current_key(child, rest, f'{prefix}{head}.')}"
    return key


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and ill-typed values."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    data = _migrate_keys(cls, data, prefix)
    for key in data:
        if key not in fields:
            hint = did_you_mean(str(key), fields, prefix=prefix, clause=True)
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint} Valid keys here: {sorted(fields)}")
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _check_value(data[name], hints[name], f"{prefix}{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required config key '{prefix}{name}' ({_type_name(hints[name])})")
    try:
        return cls(**values)
    except OutOfRangeError as exc:
        raise ConfigError(exc.message(f"{prefix}{exc.key}")) from exc
    except ConfigError as exc:
        raise ConfigError(f"{where + ': ' if where else ''}{exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """A dataclass instance (recursively) as plain YAML-able data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def parse_overrides(overrides: Sequence[str]) -> list[tuple[list[str], Any]]:
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=1e-4)")
        try:
            value = _load_yaml(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: cannot parse value {raw!r} ({exc})") from exc
        if isinstance(value, str) and _looks_numeric(raw):
            value = float(raw)  # YAML 1.1 reads '1e-4' as a string; users mean a number
        parsed.append((key.split("."), value))
    return parsed


def _looks_numeric(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return True


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set dotted keys in a nested mapping (creating intermediate mappings); validation happens later."""
    for path, value in parse_overrides(overrides):
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {'.'.join(path)}: '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        data = _load_yaml(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        raise ConfigError(f"config file {path} is empty: write the keys to set (start from `vla-parl cp <config> "
                          f"{path.name}`), or drop --config to use the recipe's default config")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level of a config must be a mapping of keys")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """YAML file (optional) + `key=value` overrides → validated dataclass `cls`."""
    data = _migrate_tree(cls, _read_yaml(Path(path))) if path is not None else {}
    # overrides are renamed on their own, so a moved key given on the command line overrides the file as before
    renamed = [f"{_current_key(cls, key)}={raw}" if sep else item
               for item in overrides for key, sep, raw in [item.partition("=")]]
    data = apply_overrides(data, renamed)
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        source = f"{path}: " if path is not None else ""
        raise ConfigError(f"{source}{exc}") from exc
