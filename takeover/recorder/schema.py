"""The episode file schema (version 2): every dataset and attribute, with dtype, shape and units.

This module is the single source of truth that the writer, the recovery, `verify`, the reader
and the docs test share; `docs/dataset-format.md` describes the same tables for people.

Shapes use T for the number of steps, H x W for the camera frame and N for the LiDAR beams.

Versions: 1, the first layout; 2 adds what the LiDAR protective field did on each step
(`field/state`, `field/clearance_m`) and the episode's `protective_stops` (issue 22). Files of
version 1 are still read and verified against the datasets and attributes they had
(`DatasetSpec.since`, `ATTR_SINCE`); a reader sees no field data in them.

Within version 2, the help monitor's per-step datasets (`help/requested`, `help/reason`,
`help/score`; issue 17) were added as optional datasets, without a new version: nothing that
was there changes meaning, a reader of any version-2 file that lacks them sees no help data
(Episode.help_* None), and a takeover that predates them reads and verifies the new files (it
ignores datasets it does not know). A recovered or imported episode gets them filled
(COLUMN_FILL: no request, no reason, no score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from takeover.types import (
    ACTION_MODE_DEMONSTRATION,
    ACTION_MODE_INTERVENTION,
    ACTION_MODE_ROBOT,
    CommandSource,
    FieldState,
    HelpReason,
    Mode,
)

SCHEMA_NAME = "takeover-episode"
SCHEMA_VERSION = 2

#: HDF5 file-format bounds: v110 is the oldest format with SWMR (crash-consistent flushes)
#: and the newest we allow, so that HDF5 1.10+ readers (robomimic's, a Jetson's) open the files.
LIBVER = ("v110", "v110")

#: `action_mode` on ticks that are neither a demonstration nor a supervised run (IDLE, ESTOP,
#: LINK_LOST). Out of the Sirius range on purpose: training and export leave these steps out.
ACTION_MODE_UNLABELED = -128
ACTION_MODES = (
    ACTION_MODE_DEMONSTRATION,
    ACTION_MODE_ROBOT,
    ACTION_MODE_INTERVENTION,
    ACTION_MODE_UNLABELED,
)

# Stored codes for the enums. Fixed here rather than taken from enum order, so that reordering
# an enum in code never changes what old files mean.
MODE_CODES: dict[Mode, int] = {
    Mode.IDLE: 0,
    Mode.MANUAL: 1,
    Mode.AUTO: 2,
    Mode.TAKEOVER: 3,
    Mode.ESTOP: 4,
    Mode.LINK_LOST: 5,
    Mode.RESET: 6,
}
SOURCE_CODES: dict[CommandSource, int] = {
    CommandSource.NONE: 0,
    CommandSource.HUMAN: 1,
    CommandSource.POLICY: 2,
    CommandSource.RESET: 3,
}
#: `field/state`: 0 also on ticks outside a driving mode and in files without a field.
FIELD_STATE_CODES: dict[FieldState, int] = {
    FieldState.OFF: 0,
    FieldState.CLEAR: 1,
    FieldState.WARNING: 2,
    FieldState.LIMITED: 3,
    FieldState.STOPPED: 4,
    FieldState.BLIND: 5,
    FieldState.CORRIDOR: 6,
}
FIELD_STATE_BY_CODE = {code: state for state, code in FIELD_STATE_CODES.items()}
#: `help/reason`: 0 none (no signal, outside AUTO, or a file without help data).
HELP_REASON_CODES: dict[HelpReason | None, int] = {
    None: 0,
    HelpReason.BLOCKED: 1,
    HelpReason.NOVELTY: 2,
    HelpReason.NO_PROGRESS: 3,
    HelpReason.CLEARANCE: 4,
    HelpReason.SLIP: 5,
    HelpReason.MISALIGNED: 6,  # appended: the codes of files already written keep their meaning
}
HELP_REASON_BY_CODE = {code: reason for reason, code in HELP_REASON_CODES.items()}
#: The help datasets (optional in version 2: absent in files written before them).
HELP_DATASETS = ("help/requested", "help/reason", "help/score")
MODE_BY_CODE = {code: mode for mode, code in MODE_CODES.items()}
SOURCE_BY_CODE = {code: source for source, code in SOURCE_CODES.items()}

ODOM_COLUMNS = ("x_m", "y_m", "yaw_rad", "v_mps", "w_radps")
ACTION_COLUMNS = ("v_mps", "w_radps")
REASON_BYTES = 48  # per-step reason text, UTF-8, truncated


#: The `outcome` attribute of a `.partial` file while it is being written.
OUTCOME_RECORDING = "recording"


@dataclass(frozen=True)
class DatasetSpec:
    """One per-step dataset. `shape` is the shape of one step; None entries vary per file."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]
    units: str
    meaning: str
    optional: bool = False  # present only when the robot has that sensor
    since: int = 1  # the schema version that introduced it (older files lack it)


def _dt(spec: str | type) -> np.dtype:
    return np.dtype(spec)


DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec("t_ns", _dt("<i8"), (), "ns", "tick start on the control loop's monotonic clock"),
    DatasetSpec("step", _dt("<i8"), (), "-", "the loop's tick counter (gaps = dropped steps)"),
    DatasetSpec("obs/valid", _dt(bool), (), "-", "an observation was available on this tick"),
    DatasetSpec("obs/t_ns", _dt("<i8"), (), "ns",
                "when the observation was taken, on the link's clock (-1 when not valid)"),
    DatasetSpec("obs/image", _dt("u1"), (None, None, 3), "0-255",
                "forward camera frame, RGB, one frame per chunk (zeros when absent)",
                optional=True),
    DatasetSpec("obs/scan", _dt("<f4"), (None,), "m",
                "LiDAR ranges, counter-clockwise from angle_min_rad; NaN = no return",
                optional=True),
    DatasetSpec("obs/odom", _dt("<f8"), (5,), "m, m, rad, m/s, rad/s",
                "odometry x_m, y_m, yaw_rad, v_mps, w_radps (NaN when not valid)"),
    DatasetSpec("obs/battery_frac", _dt("<f4"), (), "0-1", "battery charge (NaN when not valid)"),
    DatasetSpec("obs/docked", _dt(bool), (), "-", "the base reports charging contact"),
    DatasetSpec("obs/estop", _dt(bool), (), "-", "the base's own e-stop is latched"),
    DatasetSpec("obs/bumper", _dt(bool), (), "-", "the bumper (contact sensor) is pressed"),
    DatasetSpec("action", _dt("<f8"), (2,), "m/s, rad/s",
                "the command actually sent to the base (after clamping): v_mps, w_radps"),
    DatasetSpec("policy_action", _dt("<f8"), (2,), "m/s, rad/s",
                "what the policy proposed, also while the human drove; NaN = no proposal"),
    DatasetSpec("human_action", _dt("<f8"), (2,), "m/s, rad/s",
                "the operator's input, also while the policy drove; NaN = no input"),
    DatasetSpec("action_mode", _dt("i1"), (), "-",
                "Sirius label: -1 demonstration, 0 robot, 1 human intervention, "
                "-128 unlabeled (IDLE/ESTOP/LINK_LOST ticks)"),
    DatasetSpec("source", _dt("u1"), (), "-", "who decided the command: 0 none, 1 human, 2 policy"),
    DatasetSpec("mode", _dt("u1"), (), "-",
                "arbiter mode: 0 IDLE, 1 MANUAL, 2 AUTO, 3 TAKEOVER, 4 ESTOP, 5 LINK_LOST"),
    DatasetSpec("reason", _dt(f"S{REASON_BYTES}"), (), "UTF-8",
                "why the arbiter chose this command (e.g. 'deadman released'), may be empty"),
    DatasetSpec("timing/loop_late_ns", _dt("<i8"), (), "ns",
                "how far past its deadline the tick started"),
    DatasetSpec("timing/policy_latency_ns", _dt("<i8"), (), "ns",
                "policy inference time on this tick (0 when the policy did not run)"),
    DatasetSpec("field/state", _dt("u1"), (), "-",
                "what the LiDAR protective field did: 0 off, 1 clear, 2 warning, 3 limited, "
                "4 stopped, 5 blind, 6 corridor", since=2),
    DatasetSpec("field/clearance_m", _dt("<f4"), (), "m",
                "free travel along the commanded arc before the footprint comes within the "
                "protective distance of a return (capped at the look-ahead); NaN = none", since=2),
    DatasetSpec("help/requested", _dt(bool), (), "-",
                "the robot is asking for help on this step (AUTO, holding still until the "
                "operator takes over or hands back)", optional=True, since=2),
    DatasetSpec("help/reason", _dt("u1"), (), "-",
                "while requested, why: 1 blocked, 2 novelty, 3 no_progress, 4 clearance, 5 slip, "
                "6 misaligned; otherwise the highest-priority signal raised but not yet confirmed; 0 none",
                optional=True, since=2),
    DatasetSpec("help/score", _dt("<f4"), (), "-",
                "the policy's novelty (ensemble disagreement) for this step's proposal; "
                "NaN = none", optional=True, since=2),
)
DATASET_BY_NAME = {d.name: d for d in DATASETS}
#: Every dataset except the image, whose frames are written chunk by chunk.
COLUMN_NAMES = tuple(d.name for d in DATASETS if d.name != "obs/image")
#: What a writer stores for a column its source does not have (an import, a recovered file of
#: an older version): the field did nothing it knows of.
COLUMN_FILL: dict[str, float | int] = {"field/state": 0, "field/clearance_m": float("nan"),
                                       "help/requested": 0, "help/reason": 0,
                                       "help/score": float("nan")}

# Attributes on the file's root group.
ATTR_TYPES: dict[str, type] = {
    "schema": str,  # SCHEMA_NAME
    "schema_version": int,  # SCHEMA_VERSION
    "round": int,  # the round directory's number (rNNN)
    "episode": int,  # the episode's number in its round (ep_NNNN)
    "model_id": str,  # the model that drove (e.g. "r001"), "" for demonstrations
    "operator": str,  # who supervised or drove
    "robot_url": str,  # the robot link URL (sim://..., serial://..., ws://...) or bag://...
    "rate_hz": float,  # the control loop's (or the resampling) rate
    "start_time_ns": int,  # wall-clock start, ns since the Unix epoch (UTC)
    "start_time": str,  # the same, ISO 8601 UTC, for people
    "config": str,  # the configuration in force, JSON
    "extra": str,  # caller-supplied metadata, JSON object (e.g. {"seed": 7})
    "origin": str,  # "recorder", "ros1-bag", "ros2-bag"
    "takeover_version": str,  # package version that wrote the file
    "image_compression": str,  # "none", "lzf", "gzip:N"
    # Written at the end of the episode (fixed-size, updated in place):
    "outcome": str,  # Outcome value; "recording" while the file is a .partial
    "end_reason": str,  # why it ended: "operator", "disk full", "recovered after crash", ...
    "end_time_ns": int,  # wall-clock end, ns since the Unix epoch
    "num_steps": int,  # T; in a .partial, the number of steps safely on disk
    "duration_s": float,  # (t_ns[-1] - t_ns[0]) / 1e9 + 1 / rate_hz
    "demo_steps": int,  # steps with action_mode -1
    "robot_steps": int,  # steps with action_mode 0
    "intervention_steps": int,  # steps with action_mode 1 (the operator took over)
    "human_steps": int,  # steps the operator drove: demo_steps + intervention_steps
    "unlabeled_steps": int,  # steps with action_mode -128
    "interventions": int,  # maximal runs of action_mode 1
    "dropped_steps": int,  # steps the writer dropped because its queue was full
    "recovered": bool,  # rebuilt from a .partial after a crash
    "protective_stops": int,  # runs of field/state 4 (the field stopped the robot); version 2
    # The attributes above (but config) as one JSON object, written last at the end of the
    # episode: listing reads this one attribute instead of twenty ("" in a .partial).
    "summary": str,
}
#: Attributes that files written since they were introduced have, and older ones may lack
#: (checked by `verify` where present; not part of `summary`).
OPTIONAL_ATTR_TYPES: dict[str, type] = {
    # JSON object: each input the robot's link expects ("scan", "image") that never arrived
    # before the file was made -> how long the link had waited for it (s). "{}": none missing.
    # Such an input has no dataset in the episode.
    "missing_inputs": str,
    # The docking outcome detector's verdict (control/docking_outcome.py), beside `outcome`:
    # an Outcome value, "" when nothing ran the detector.
    "detected_outcome": str,
    # Its evidence, a JSON object: "signal" (battery_current, power_supply_status,
    # docked_topic, bumper, stall, timeout, no_charge, operator), "t_ns" (the control loop's
    # clock) and the signal's figures (value_a, held_ms, ...); "{}" when nothing ran it.
    "outcome_evidence": str,
    # The robot's name when several robots record into one workspace (also in the file's
    # name, ep_NNNN_<robot>.hdf5); "" for the one unnamed robot. Not in `summary` (older
    # readers compare it with the attributes they know), read beside it.
    "robot_name": str,
}
#: The detector's attributes, created with the file at fixed sizes (SWMR cannot add them later).
DETECTION_ATTR_DTYPES: dict[str, np.dtype] = {
    "detected_outcome": np.dtype("S16"),
    "outcome_evidence": np.dtype("S1024"),
}
#: The schema version that introduced an attribute (older files lack it); others: 1.
ATTR_SINCE: dict[str, int] = {"protective_stops": 2}
#: Attributes copied into `summary`.
SUMMARY_ATTRS = tuple(a for a in ATTR_TYPES if a not in ("config", "summary"))
SUMMARY_BYTES = 8192
REQUIRED_ATTRS = tuple(ATTR_TYPES)
#: The end-of-episode attributes and their fixed HDF5 types (modified in place under SWMR).
END_ATTR_DTYPES: dict[str, np.dtype] = {
    "outcome": np.dtype("S16"),
    "end_reason": np.dtype("S64"),
    "end_time_ns": np.dtype("<i8"),
    "num_steps": np.dtype("<i8"),
    "duration_s": np.dtype("<f8"),
    "demo_steps": np.dtype("<i8"),
    "robot_steps": np.dtype("<i8"),
    "intervention_steps": np.dtype("<i8"),
    "human_steps": np.dtype("<i8"),
    "unlabeled_steps": np.dtype("<i8"),
    "interventions": np.dtype("<i8"),
    "dropped_steps": np.dtype("<i8"),
    "recovered": np.dtype(bool),
    "protective_stops": np.dtype("<i8"),
    "summary": np.dtype(f"S{SUMMARY_BYTES}"),
}
