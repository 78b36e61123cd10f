"""The JSON codec of the network control core (session/core_net.py): what crosses a shop-floor
network between a robot's core and the operator's terminal.

Why not pickle: unpickling runs whatever code the bytes name, so a pickle from the network is a
remote shell for anyone who can reach the port. Here decoding builds only the types of an
explicit registry (`DATACLASSES`, `ENUMS`), from JSON, and checks every field against the
dataclass's annotations (an `int` field takes an int, never a bool, a string or a list); anything
else raises `WireError`, one line naming where and what.

Encoding (UTF-8 JSON, no NaN tokens):

    None, bool, int, str        as themselves
    float                       as itself; NaN and +-inf as {"$f": "nan" | "inf" | "-inf"}
    list, tuple                 arrays (a tuple comes back as a tuple where the field says so)
    dict (str keys)             objects; with a key starting with "$": {"$d": [[key, value], ...]}
    dataclass                   {"$t": "StepRecord", field: value, ...}   (registered types only)
    enum                        {"$e": "Mode", "n": "AUTO"}                (member names only)
    pathlib.Path                {"$p": "/robot/ws/rounds/r001/ep_0004.hdf5"}
    numpy array                 {"$a": base64 of the C-order bytes, "dt": "uint8", "sh": [96, 96, 3]}
                                (little-endian; dtypes in ARRAY_DTYPES; at most MAX_ARRAY_BYTES)
    numpy scalar                its Python value

Limits: a message over MAX_MESSAGE_BYTES, nesting deeper than MAX_DEPTH, or an array over
MAX_ARRAY_BYTES is refused before anything is built from it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import functools
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Union

import numpy as np

from takeover.control.arbiter import OperatorEvent
from takeover.control.loop import LoopTiming
from takeover.errors import TakeoverError
from takeover.hw.base import LinkHealth
from takeover.inputs.gamepad import GamepadStatus
from takeover.recorder.writer import RecorderAlert, WriterStats
from takeover.session.docking_lifecycle import DockingStatus
from takeover.session.operator import EpisodeState, ModelRef, OpenResult, SessionSnapshot
from takeover.types import (
    Command,
    CommandSource,
    FieldState,
    FieldStatus,
    HelpPriority,
    HelpReason,
    HelpStatus,
    Mode,
    Observation,
    Odometry,
    Outcome,
    Pose2D,
    StepRecord,
)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # a 1280x720 RGB frame (2.8 MB) in base64, with room
MAX_ARRAY_BYTES = 4 * 1024 * 1024
MAX_ARRAY_DIMS = 4
MAX_DEPTH = 32  # a snapshot nests 6 deep; a deeper message is an attack or a bug
ARRAY_DTYPES = ("uint8", "int8", "uint16", "int16", "int32", "int64", "float32", "float64", "bool")

# Everything the core protocol carries. Adding a type here is a protocol change: both ends
# must have it.
DATACLASSES: dict[str, type] = {cls.__name__: cls for cls in (
    Command, Odometry, Pose2D, Observation, FieldStatus, HelpStatus, StepRecord, LinkHealth,
    EpisodeState, RecorderAlert, WriterStats, ModelRef, GamepadStatus, DockingStatus,
    SessionSnapshot, OpenResult, LoopTiming)}
ENUMS: dict[str, type[enum.Enum]] = {cls.__name__: cls for cls in (
    Mode, CommandSource, FieldState, HelpReason, HelpPriority, OperatorEvent, Outcome)}

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class WireError(TakeoverError):
    """A message that is not one this protocol carries; the text says where and why."""


# --- encoding ------------------------------------------------------------------------------


def encode(value: Any) -> bytes:
    """`value` as one JSON message (UTF-8). Raises WireError for a type the protocol does not
    carry (nothing is sent then)."""
    data = json.dumps(_enc(value, 0), separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(data)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    return data


def _enc(v: Any, depth: int) -> Any:
    kind = type(v)
    if kind is float:  # the common case first: a snapshot is mostly floats (trail, odometry)
        return v if math.isfinite(v) else _enc_nonfinite(v)
    if kind is str or kind is int or kind is bool or v is None:
        return v
    if kind is tuple and depth < MAX_DEPTH and all(type(x) is float for x in v):
        return [x if math.isfinite(x) else _enc_nonfinite(x) for x in v]
    if depth > MAX_DEPTH:
        raise WireError(f"nesting deeper than {MAX_DEPTH}")
    if isinstance(v, enum.Enum):  # before int: an IntEnum is an int
        name = type(v).__name__
        if ENUMS.get(name) is not type(v):
            raise WireError(f"enum {name} is not carried by the core protocol")
        return {"$e": name, "n": v.name}
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else _enc_nonfinite(v)
    if isinstance(v, np.ndarray):
        return _enc_array(v)
    if isinstance(v, np.generic):
        return _enc(v.item(), depth)
    if isinstance(v, Path):
        return {"$p": str(v)}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        name = type(v).__name__
        if DATACLASSES.get(name) is not type(v):
            raise WireError(f"type {name} is not carried by the core protocol")
        out: dict[str, Any] = {"$t": name}
        for f in dataclasses.fields(v):
            out[f.name] = _enc(getattr(v, f.name), depth + 1)
        return out
    if isinstance(v, list | tuple):
        return [_enc(item, depth + 1) for item in v]
    if isinstance(v, dict):
        if not all(isinstance(key, str) for key in v):
            raise WireError(f"dict keys are strings, not {sorted(map(repr, v))[0]}")
        if any(key.startswith("$") for key in v):  # would read as a tag: as pairs instead
            return {"$d": [[key, _enc(item, depth + 1)] for key, item in v.items()]}
        return {key: _enc(item, depth + 1) for key, item in v.items()}
    raise WireError(f"type {type(v).__name__} is not carried by the core protocol")


def _enc_nonfinite(v: float) -> dict[str, str]:
    return {"$f": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}


def _enc_array(a: np.ndarray) -> dict[str, Any]:
    dtype = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
    if dtype.name not in ARRAY_DTYPES:
        raise WireError(f"array dtype {a.dtype} is not carried (one of {', '.join(ARRAY_DTYPES)})")
    if a.nbytes > MAX_ARRAY_BYTES or a.ndim > MAX_ARRAY_DIMS:
        raise WireError(f"array {a.shape} {a.dtype}: over the limit ({MAX_ARRAY_BYTES} bytes, "
                        f"{MAX_ARRAY_DIMS} dimensions)")
    raw = np.ascontiguousarray(a, dtype=dtype.newbyteorder("<")).tobytes()
    return {"$a": base64.b64encode(raw).decode("ascii"), "dt": dtype.name, "sh": list(a.shape)}


# --- decoding ------------------------------------------------------------------------------


def decode(data: bytes | str, hint: Any = Any) -> Any:
    """One message back into values; with `hint` (a type annotation), checked against it.
    Builds only registered types; raises WireError for anything malformed."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(data)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        raw = json.loads(data, parse_constant=_refuse_constant)
    except WireError:
        raise
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise WireError(f"not a JSON message: {err}") from None
    except RecursionError:
        raise WireError(f"nesting deeper than {MAX_DEPTH}") from None
    try:
        return conform(_dec(raw, 0, "message"), hint, "message")
    except WireError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as err:
        # A case the checks above missed: still one line, never a crash of the reader.
        raise WireError(f"malformed message ({type(err).__name__}: {err})") from None


def _refuse_constant(name: str) -> Any:
    raise WireError(f"{name} is not JSON: non-finite numbers travel as {{\"$f\": ...}}")


def _dec(v: Any, depth: int, where: str) -> Any:
    if type(v) is float or type(v) is int or type(v) is str:
        return v
    if depth > MAX_DEPTH:
        raise WireError(f"{where}: nesting deeper than {MAX_DEPTH}")
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list):
        if all(type(item) is float or type(item) is int for item in v):
            return v  # a row of numbers (a trail point): nothing to build
        # `where` names fields, not list indices: a string per item costs more than the item.
        return [_dec(item, depth + 1, where) for item in v]
    if not isinstance(v, dict):
        raise WireError(f"{where}: unexpected JSON value")
    tags = [key for key in v if key.startswith("$")]
    if not tags:
        return {key: _dec(item, depth + 1, f"{where}.{key}") for key, item in v.items()}
    if len(tags) > 1:
        raise WireError(f"{where}: more than one tag ({', '.join(tags)})")
    tag = tags[0]
    if tag == "$t":
        return _dec_dataclass(v, depth, where)
    if tag == "$e":
        return _dec_enum(v, where)
    if tag == "$f":
        _keys(v, {"$f"}, where)
        if not isinstance(v["$f"], str) or v["$f"] not in _NONFINITE:
            raise WireError(f"{where}: $f is one of nan, inf, -inf")
        return _NONFINITE[v["$f"]]
    if tag == "$p":
        _keys(v, {"$p"}, where)
        if not isinstance(v["$p"], str) or "\x00" in v["$p"]:
            raise WireError(f"{where}: $p is a path string")
        return Path(v["$p"])
    if tag == "$a":
        return _dec_array(v, where)
    if tag == "$d":
        _keys(v, {"$d"}, where)
        pairs = v["$d"]
        if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
            raise WireError(f"{where}: $d is a list of [key, value] pairs")
        return {key: _dec(item, depth + 1, where) for key, item in pairs}
    raise WireError(f"{where}: unknown tag {tag!r}")


def _keys(v: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = set(v) - allowed
    if extra:
        raise WireError(f"{where}: unexpected key {sorted(extra)[0]!r}")


def _dec_enum(v: dict[str, Any], where: str) -> enum.Enum:
    _keys(v, {"$e", "n"}, where)
    name, member = v["$e"], v.get("n")
    cls = ENUMS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise WireError(f"{where}: unknown enum {name!r}")
    if not isinstance(member, str) or member not in cls.__members__:
        raise WireError(f"{where}: {member!r} is not a {name}")
    return cls.__members__[member]


def _dec_array(v: dict[str, Any], where: str) -> np.ndarray:
    _keys(v, {"$a", "dt", "sh"}, where)
    data, dtype_name, shape = v["$a"], v.get("dt"), v.get("sh")
    if dtype_name not in ARRAY_DTYPES:
        raise WireError(f"{where}: array dtype {dtype_name!r} is not carried")
    if (not isinstance(shape, list) or len(shape) > MAX_ARRAY_DIMS
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise WireError(f"{where}: array shape is a list of at most {MAX_ARRAY_DIMS} sizes")
    dtype = np.dtype(dtype_name).newbyteorder("<")
    nbytes = dtype.itemsize
    for n in shape:  # one at a time: the product of huge sizes must not be built first
        nbytes *= n
        if nbytes > MAX_ARRAY_BYTES:
            raise WireError(f"{where}: array {shape} {dtype_name} is over the "
                            f"{MAX_ARRAY_BYTES}-byte limit")
    if not isinstance(data, str) or len(data) > 4 * (MAX_ARRAY_BYTES // 3 + 1):
        raise WireError(f"{where}: array data is a base64 string within the size limit")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f"{where}: array data is not base64") from None
    if len(raw) != nbytes:
        raise WireError(f"{where}: array data has {len(raw)} bytes, shape {shape} "
                        f"{dtype_name} needs {nbytes}")
    return np.frombuffer(raw, dtype=dtype).astype(dtype_name, copy=True).reshape(shape)


def _dec_dataclass(v: dict[str, Any], depth: int, where: str) -> Any:
    name = v["$t"]
    cls = DATACLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise WireError(f"{where}: unknown type {name!r}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, item in v.items():
        if key == "$t":
            continue
        if key not in fields:
            raise WireError(f"{where}: {name} has no field {key!r}")
        here = f"{where}.{key}"
        kwargs[key] = conform(_dec(item, depth + 1, here), hints[key], here)
    for key, f in fields.items():
        if key not in kwargs and f.default is dataclasses.MISSING and \
                f.default_factory is dataclasses.MISSING:
            raise WireError(f"{where}: {name} is missing its field {key!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise WireError(f"{where}: {name}: {err}") from None


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def conform(value: Any, hint: Any, where: str = "value") -> Any:
    """`value` (decoded) as the annotation `hint` says, or WireError: a tuple where a tuple is
    meant, an int accepted for a float; nothing else is converted."""
    if hint is float:  # the common cases first (a snapshot has hundreds of floats)
        if type(value) is float:
            return value
    elif hint is Any or hint is object:
        return value
    origin, args = _origin_args(hint)
    if origin is tuple and type(value) is list and args == (float, float) and len(value) == 2 \
            and type(value[0]) is float and type(value[1]) is float:
        return (value[0], value[1])  # a trail point
    if origin is Union or origin is types.UnionType:
        for arm in args:
            try:
                return conform(value, arm, where)
            except WireError:
                continue
        raise WireError(f"{where}: {_kind(value)} is not {_hint_name(hint)}")
    if hint is None or hint is type(None):
        if value is None:
            return None
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint in (bool, str):
        if type(value) is hint:
            return value
    elif origin is list:
        if isinstance(value, list):
            (item,) = args or (Any,)
            try:  # as in _dec: the index is named only for the item that is wrong
                return [conform(x, item, where) for x in value]
            except WireError:
                for i, x in enumerate(value):
                    conform(x, item, f"{where}[{i}]")
                raise
    elif origin is tuple:
        if isinstance(value, list | tuple):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(conform(x, args[0], f"{where}[{i}]") for i, x in enumerate(value))
            if len(args) == len(value):
                return tuple(conform(x, a, f"{where}[{i}]")
                             for i, (x, a) in enumerate(zip(value, args, strict=True)))
    elif origin is dict:
        if isinstance(value, dict):
            _, item = args or (str, Any)
            return {k: conform(x, item, f"{where}.{k}") for k, x in value.items()}
    elif origin is np.ndarray:
        if isinstance(value, np.ndarray):
            dtype_args = typing.get_args(args[1])
            want = dtype_args[0] if dtype_args else Any
            if want is Any or isinstance(want, typing.TypeVar) or value.dtype == np.dtype(want):
                return value
    elif isinstance(hint, type):
        if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
            return value
    else:
        raise WireError(f"{where}: the protocol has no rule for {_hint_name(hint)}")
    raise WireError(f"{where}: {_kind(value)} is not {_hint_name(hint)}")


@functools.lru_cache(maxsize=256)
def _origin_args(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    return typing.get_origin(hint), typing.get_args(hint)


def _kind(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype}"
    return "None" if value is None else f"a {type(value).__name__}"


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
