"""Check episode files against the schema; every problem is one line naming the file.

Structure (attributes, datasets, dtypes, shapes, lengths, chunking) and the per-step values
that the metrics and training rely on (timestamps increasing, labels and codes in range,
summary attributes consistent with the data) are always checked. `deep` also decodes every
camera frame, which finds damaged chunks at the cost of reading the whole file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from takeover.recorder import schema
from takeover.recorder.episode_file import StepCounts
from takeover.recorder.errors import EpisodeError
from takeover.recorder.layout import (
    QUARANTINE_DIR,
    WorkspaceLock,
    check_workspace,
    parse_episode_name,
    parse_round,
)
from takeover.recorder.reader import attr_text, open_h5
from takeover.recorder.recover import find_leftovers, leftover_robot
from takeover.recorder.store import EpisodeStore
from takeover.types import Outcome

_PY_TYPES_OK: dict[type, tuple[type, ...]] = {
    int: (int, np.integer),
    float: (float, np.floating, int, np.integer),
    str: (str, bytes, np.bytes_),
    bool: (bool, np.bool_, int, np.integer),
}


def _rel(path: Path, workspace: Path | None) -> str:
    if workspace is not None:
        try:
            return str(path.relative_to(workspace))
        except ValueError:
            pass
    return str(path)


def verify_episode(path: Path, *, deep: bool = False, workspace: Path | None = None) -> list[str]:
    """Problems found in one finished episode file (empty: it follows the schema)."""
    name = _rel(path, workspace)
    try:
        f = open_h5(path)
    except EpisodeError as err:
        return [f"{name}: {str(err).split(': ', 1)[-1]}"]
    with f:
        try:
            return [f"{name}: {p}" for p in _check(path, f, deep)]
        except (OSError, ValueError, KeyError, TypeError) as err:  # damage inside the file
            return [f"{name}: unreadable content ({err})"]


def _check(path: Path, f: h5py.File, deep: bool) -> list[str]:
    problems: list[str] = []
    a = f.attrs
    if attr_text(a.get("schema", "")) != schema.SCHEMA_NAME:
        return ["not a takeover episode file (schema attribute missing or wrong)"]
    version = a.get("schema_version")
    if version is None or not 1 <= int(version) <= schema.SCHEMA_VERSION:
        return [f"schema_version {version} is not one of 1..{schema.SCHEMA_VERSION}"]
    version = int(version)  # checked against what its version has (schema.py, "Versions")
    for attr, kind in schema.ATTR_TYPES.items():
        if schema.ATTR_SINCE.get(attr, 1) > version:
            continue
        if attr not in a:
            problems.append(f"attribute {attr!r} is missing")
        elif not isinstance(a[attr], _PY_TYPES_OK[kind]):
            problems.append(f"attribute {attr!r} has type {type(a[attr]).__name__}, "
                            f"expected {kind.__name__}")
    if problems:
        return problems
    outcome = attr_text(a["outcome"])
    if outcome not in {o.value for o in Outcome}:
        problems.append(f"outcome {outcome!r} is not one of "
                        f"{', '.join(o.value for o in Outcome)}")
    parsed = parse_episode_name(path.name)
    if parsed is not None and parsed.number != int(a["episode"]):
        problems.append(f"attribute episode={int(a['episode'])} does not match the file name")
    robot = attr_text(a.get("robot_name", ""))
    if parsed is not None and robot != parsed.robot:
        problems.append(f"attribute robot_name={robot!r} does not match the file name")
    r = parse_round(path.parent.name)
    if r is not None and r != int(a["round"]):
        problems.append(f"attribute round={int(a['round'])} does not match directory "
                        f"{path.parent.name}")
    if not float(a["rate_hz"]) > 0:
        problems.append(f"rate_hz {float(a['rate_hz'])} is not positive")

    n = int(a["num_steps"])
    for spec in schema.DATASETS:
        if spec.name not in f:
            if not spec.optional and spec.since <= version:
                problems.append(f"dataset {spec.name!r} is missing")
            continue
        ds = f[spec.name]
        if not isinstance(ds, h5py.Dataset):
            problems.append(f"{spec.name!r} is not a dataset")
            continue
        if ds.dtype != spec.dtype:
            problems.append(f"dataset {spec.name!r} has dtype {ds.dtype}, expected {spec.dtype}")
        if ds.ndim != 1 + len(spec.shape) or any(
                want is not None and got != want
                for got, want in zip(ds.shape[1:], spec.shape, strict=True)):
            expected = ", ".join(["T", *("*" if s is None else str(s) for s in spec.shape)])
            problems.append(f"dataset {spec.name!r} has shape {ds.shape}, expected ({expected})")
        if ds.shape and ds.shape[0] != n:
            problems.append(f"dataset {spec.name!r} has {ds.shape[0]} steps, num_steps is {n}")
    if "obs/image" in f and f["obs/image"].ndim == 4:
        img = f["obs/image"]
        if img.chunks != (1, *img.shape[1:]):
            problems.append(f"obs/image chunks {img.chunks} are not one frame per chunk")
    if problems:
        return problems
    return _check_values(f, n, deep) + _missing_input_problems(a) + _detection_problems(a)


def _detection_problems(a: h5py.AttributeManager) -> list[str]:
    """The docking outcome detector's verdict, where the file has one: an outcome, and its
    evidence a JSON object naming the signal that decided."""
    if "detected_outcome" not in a:
        return []  # written before the attributes existed
    problems = []
    detected = attr_text(a["detected_outcome"])
    if detected and detected not in {o.value for o in Outcome}:
        problems.append(f"detected_outcome {detected!r} is not an outcome")
    try:
        evidence = json.loads(attr_text(a.get("outcome_evidence", "{}")) or "{}")
        if not isinstance(evidence, dict) or (detected and "signal" not in evidence):
            raise ValueError("no signal")
    except (TypeError, ValueError):
        problems.append("attribute outcome_evidence is not a JSON object naming its signal")
    return problems


def _missing_input_problems(a: h5py.AttributeManager) -> list[str]:
    """An input the robot's link expects but never sent (`missing_inputs`): the episode has no
    dataset for it, which a policy trained on it would not expect."""
    if "missing_inputs" not in a:
        return []  # written before the attribute existed
    try:
        missing = json.loads(attr_text(a["missing_inputs"]))
        if not isinstance(missing, dict):
            raise ValueError("not an object")
        return [f"{name} never received: the robot's link expects it, and none came in the "
                f"{float(waited_s):.1f} s before recording began; the episode has no obs/{name}"
                for name, waited_s in sorted(missing.items())]
    except (TypeError, ValueError):
        return ["attribute missing_inputs is not a JSON object of input -> seconds"]


def _check_values(f: h5py.File, n: int, deep: bool) -> list[str]:
    problems: list[str] = []
    a = f.attrs
    t = f["t_ns"][:]
    if n > 1 and not (np.diff(t) > 0).all():
        i = int(np.argmax(np.diff(t) <= 0))
        problems.append(f"t_ns does not increase at step {i + 1}")
    modes = f["action_mode"][:]
    bad = ~np.isin(modes, schema.ACTION_MODES)
    if bad.any():
        problems.append(f"action_mode {int(modes[bad][0])} at step {int(np.argmax(bad))} is not "
                        "one of -1, 0, 1, -128")
    for dataset_name, codes in (("source", schema.SOURCE_BY_CODE), ("mode", schema.MODE_BY_CODE),
                                ("field/state", schema.FIELD_STATE_BY_CODE),
                                ("help/reason", schema.HELP_REASON_BY_CODE)):
        if dataset_name not in f:  # field/state: version 1; help/reason: written before it
            continue
        values = f[dataset_name][:]
        bad = ~np.isin(values, list(codes))
        if bad.any():
            problems.append(f"{dataset_name} code {int(values[bad][0])} at step "
                            f"{int(np.argmax(bad))} is unknown")
    valid = f["obs/valid"][:]
    obs_t = f["obs/t_ns"][:]
    if (obs_t[~valid] != -1).any():
        problems.append("obs/t_ns is not -1 on a step without an observation")
    counts = StepCounts()
    counts.update(modes)
    checks = [("demo_steps", counts.demo), ("robot_steps", counts.robot),
              ("intervention_steps", counts.intervention),
              ("human_steps", counts.demo + counts.intervention),
              ("unlabeled_steps", counts.unlabeled), ("interventions", counts.interventions)]
    if "field/state" in f and "protective_stops" in a:
        counts.update_field(f["field/state"][:])
        checks.append(("protective_stops", counts.protective_stops))
    for attr, value in checks:
        if int(a[attr]) != value:
            problems.append(f"attribute {attr}={int(a[attr])} but the data has {value}")
    summary = attr_text(a["summary"])
    try:
        values = json.loads(summary)
        stale = [k for k, v in values.items() if k in a and _plain(a[k]) != v]
        if stale:
            problems.append(f"attribute summary disagrees with attribute {stale[0]!r}")
    except ValueError:
        problems.append("attribute summary is not JSON")
    for dataset_name in ("action", "obs/odom"):
        values = f[dataset_name][:]
        if np.isinf(values).any():
            problems.append(f"{dataset_name} holds an infinite value")
    if deep and "obs/image" in f:
        img = f["obs/image"]
        for i in range(n):
            try:
                img[i]
            except (OSError, ValueError) as err:
                problems.append(f"obs/image frame {i} cannot be decoded ({err})")
                break
    return problems


def _plain(value: object) -> object:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class VerifyReport:
    """The result of verifying a workspace."""

    files_checked: int = 0
    problems: list[str] = field(default_factory=list)
    live: list[Path] = field(default_factory=list)  # partials of a robot recording now
    quarantined: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_workspace(workspace: Path | str, *, deep: bool = False,
                     round: int | None = None) -> VerifyReport:
    """Verify every finished episode; report leftover files a crash left behind."""
    ws = check_workspace(workspace)
    report = VerifyReport()
    store = EpisodeStore(ws)
    for path in store.episode_paths(round):
        report.files_checked += 1
        report.problems.extend(verify_episode(path, deep=deep, workspace=ws))
    recording_now: dict[str, bool] = {}  # robot name -> its recorder is running
    for path in find_leftovers(ws):
        if round is not None and parse_round(path.parent.name) != round:
            continue
        robot = leftover_robot(path)
        if robot not in recording_now:
            recording_now[robot] = WorkspaceLock(ws, robot).is_held_elsewhere()
        if recording_now[robot]:
            report.live.append(path)
        else:
            report.problems.append(f"{_rel(path, ws)}: left by an interrupted recording; run "
                                   "`takeover data recover`")
    quarantine = ws / QUARANTINE_DIR
    if quarantine.is_dir():
        report.quarantined = sum(1 for _ in quarantine.iterdir())
    return report
