"""What the `takeover` command prints: one JSON printer for every `--json`, one plain printer
for the rest, one error line.

`--json` prints one JSON object on stdout as its last line (DESIGN.md's CLI contract). Values
that JSON cannot hold are made explicit instead of failing half-way or printing a non-standard
token: a NaN or an infinity becomes null (never `NaN`/`Infinity`, which strict parsers refuse),
a path or any other object its `str()`, numpy scalars and arrays their Python values.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from takeover.errors import TakeoverError


def json_safe(value: Any) -> Any:
    """`value` with every float that JSON cannot hold replaced by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return json_safe(value.tolist())
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def dumps(obj: Any, **kwargs: Any) -> str:
    """The JSON text of `obj` as every `--json` prints it (also for result files)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def print_json(obj: Mapping[str, Any], stream: TextIO | None = None) -> None:
    """One JSON object as one line (a `--json` command's last line)."""
    out = stream or sys.stdout
    out.write(dumps(obj) + "\n")
    out.flush()


def print_result(result: Mapping[str, Any], as_json: bool) -> None:
    """A command's result: the JSON line with --json, else one `key: value` line per field."""
    if as_json:
        print_json(result)
        return
    for key, value in result.items():
        print(f"{key}: {dumps(value)}")


def print_error(error: TakeoverError | str) -> None:
    """The one line a person sees when a command cannot do what it was asked."""
    text = " ".join(str(error).split())
    print(f"takeover: error: {text}", file=sys.stderr)


# Modules of the optional extras (pyproject.toml) -> the extra that installs them.
EXTRA_OF_MODULE = {"torch": "train", "torchvision": "train", "timm": "train", "onnx": "train",
                   "onnxscript": "train", "matplotlib": "report", "cv2": "camera",
                   "cbor2": "cbor", "rclpy": "ros2", "pyarrow": "lerobot", "av": "lerobot",
                   "mcap": "mcap", "mcap_protobuf": "mcap", "foxglove_schemas_protobuf": "mcap"}


def missing_extra_line(error: ModuleNotFoundError, command: str) -> str | None:
    """One line naming the extra a command needs, for a module of an extra that is not
    installed (`takeover train` on the robot-side install, ...); None for any other module."""
    module = (error.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return (f"`takeover {command}` needs {module}, which this install does not have; install "
            f"the {extra!r} extra: pip install 'takeover[{extra}]'")
