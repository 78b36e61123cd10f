"""The workspace: one directory per robot-and-task, holding config, rounds and models.

```
takeover.toml                 configuration (robot URL, limits, ...)
rounds/r000/ep_0001.hdf5      r000 = initial demonstrations; rNNN = the runs of model rNNN
models/r001/policy.onnx       + card.json + checkpoint
models/current                pointer to the deployed model
```

Numbering: model rNNN is trained on rounds r000..rNNN-1 (all the data there was), and the
episodes run with it form round rNNN. So r000 holds the demonstrations, model r001 is trained
on them, its supervised runs and their corrections are r001, model r002 is trained on r000 and
r001, and so on. `round_for_model` is the one place that says so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from takeover.config import CONFIG_FILENAME, config_from_dict
from takeover.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_TEMPLATE = """\
# takeover workspace configuration. Every key is optional: the values shown are the defaults.
# Units are in the key names. Unknown keys are rejected with the key named.

[robot]
# sim:// (built-in simulator), serial:///dev/ttyUSB0?baud=115200, socket://HOST:PORT,
# ws://HOST:9090 (rosbridge v2)
url = "sim://"
camera_width = 96
camera_height = 96

# Several robots in one `takeover run` (the fleet screen; docs/configuration.md): a [[robots]]
# table each, with a name (a-z 0-9 _ -, in its episode files) and a URL, and its own [robot],
# [safety], [supervision] or [docking] keys merged over the tables of this file. Without any,
# the one robot is [robot]'s. For example:
# [[robots]]
# name = "bay1"
# url = "socket://10.0.0.11:5760"
# [[robots]]
# name = "bay2"
# url = "socket://10.0.0.12:5760"
# [robots.safety]
# deadman_in_auto = false # this robot runs its policy while another one is focused
# [robots.supervision]
# mode = "robot"          # and asks for help when unsure

[loop]
rate_hz = 20.0            # control rate, 1..50
realtime_priority = 10    # SCHED_FIFO priority of the loop thread (Linux, needs root or CAP_SYS_NICE); 0: off

[safety]
deadman_in_auto = true    # hold-to-run: the policy drives only while the enable button is held
takeover_deflection = 0.15       # stick deflection (0..1) that takes over from the policy
auto_resume_centered_s = 0.0     # > 0: sticks centred this long in TAKEOVER return to AUTO
obs_freshness_ms = 250.0  # an older observation latches LINK_LOST
accel_v_mps2 = 1.0
accel_w_radps2 = 4.0
decel_v_mps2 = 2.5
decel_w_radps2 = 8.0
policy_abs_max_v_mps = 1.0       # a policy output beyond this is a fault: the robot stops
policy_abs_max_w_radps = 3.0

[safety.manual]
max_v_mps = 0.5
max_w_radps = 1.5

[safety.auto]
max_v_mps = 0.4
max_w_radps = 1.2

[safety.takeover]
max_v_mps = 0.5
max_w_radps = 1.5

[safety.field]           # the LiDAR protective field (docs/safety.md)
auto = "limit"           # limit | warn | off, per mode: limit slows and stops the robot
manual = "warn"          # in MANUAL and TAKEOVER the operator's call: warn only, limit, or off
takeover = "warn"
protective_m = 0.1       # the robot stops before a return comes this close to its footprint
warning_m = 0.5          # a return this close along the path: warning
horizon_s = 2.0          # look ahead this long at the commanded speed
footprint_radius_m = 0.22  # a round base centred on the LiDAR (use the circumscribed radius)
brake_decel_mps2 = 0.8   # what the base is counted on to brake with
reaction_time_s = 0.15   # command to braking wheels (the scan's age is added)
scan_max_age_ms = 200.0  # an older (or no) scan stops the robot
min_valid_beam_frac = 0.5  # fewer valid beams within 45 deg of the motion: blocked
creep_mps = 0.1          # the dock may be reached at this speed in the docking corridor

[safety.field.dock]      # the docking corridor: the dock face's centre, yaw its outward normal
source = "link"          # link (the simulator tells it) | config (x_m, y_m, yaw_rad, odometry frame) | none
x_m = 0.0
y_m = 0.0
yaw_rad = 0.0
length_m = 0.7           # the robot's centre at most this far out from the face,
half_width_m = 0.1       # this far off the dock's axis,
heading_deg = 20.0       # and facing the dock within this

[gamepad]
# SDL GameController names, so Xbox and PlayStation pads map alike (a = cross, b = circle,
# x = square, y = triangle). Stick up = forward, stick left = counter-clockwise.
enabled = true
enable_button = "leftshoulder"          # deadman: motion only while held
enable_turbo_button = "rightshoulder"   # deadman with the turbo scales
axis_linear = "lefty"
scale_linear = 0.3                      # m/s at full deflection
scale_linear_turbo = 0.5
axis_angular = "rightx"
scale_angular = 1.0                     # rad/s at full deflection
scale_angular_turbo = 1.5
deadzone = 0.08
expo = 0.3                              # 0: linear, 1: cubic
button_manual = "a"
button_auto = "y"
button_takeover = "x"
button_estop = "b"
button_acknowledge = "back"
button_stop = "dpright"
button_episode = "start"
button_success = "dpup"
button_failure = "dpdown"
button_abort = "dpleft"

[keyboard]
# Terminals send no key release: a key holds its command while its auto-repeat arrives.
scale_linear = 0.25
scale_angular = 0.8
initial_hold_ms = 550.0
repeat_hold_ms = 150.0

[tui]
refresh_hz = 20.0
camera = "auto"           # auto (Kitty/Sixel where the terminal has them) | kitty | sixel | halfblock | off

[demonstration]
# DART: push the robot with small random turns while you demonstrate; you correct them, and
# the policy learns how to recover. Your own command is what is recorded as the label.
noise_v_mps = 0.0         # standard deviations; 0 is off
noise_w_radps = 0.0       # e.g. 0.1
tau_s = 0.5               # how long a push lasts (correlation time)

[docking]
# How an attempt's outcome is detected from what the base reports (docs/configuration.md).
charging_current_a = 0.5  # charging: BatteryState current above this (sign-normalised)
current_sign = "positive" # positive | negative: which sign means charging on this base
charge_confirm_ms = 500.0 # charging held this long = docked
charge_wait_s = 3.0       # after a contact, wait this long for charging to show
use_docked_topic = false  # also count the base's docked flag
stall_s = 8.0             # no progress this long: failure
stall_distance_m = 0.05   # progress = moved this far
stall_angle_deg = 5.0     # or turned this much
timeout_s = 60.0          # the attempt's limit: failure

[policy]
# How the robot runs the ONNX policy.
execution = "receding"    # receding | ensemble
n_action_steps = 5        # receding: commands per inference (1: re-plan every tick; docs/policy.md)
ensemble_k = 0.01         # ensemble: weights exp(-k i) over stored predictions
threads = 1               # onnxruntime threads

# [train]
# Overrides of the training defaults (docs/policy.md); a key left out keeps the default.
# Uncomment the table and the keys to set them.
# epochs = 12             # from scratch
# warm_epochs = 4         # a DAgger retrain, warm-started from the deployed model
# warm_lr = 0.0005        # its peak learning rate
# weighting = "none"      # none | iwr | sirius (unset: none, iwr for a warm start)
# dagger_retrain = "auto"  # dagger train: warm | scratch | auto (scratch while small; docs/dagger.md)
# device = "auto"         # auto | cpu | cuda | cuda:N
"""


def round_for_model(model_id: str | None) -> int:
    """The round that runs of `model_id` are recorded in: 0 without a model (demonstrations),
    N for model rN (trained on rounds < N); 0 for a model id that is not rNNN."""
    if model_id and model_id.startswith("r") and model_id[1:].isdigit():
        return int(model_id[1:])
    return 0


def find_workspace(arg: Path | None, *, required: bool) -> Path | None:
    """Where a command's workspace is: the one rule every `takeover` command follows.

    `--workspace DIR` when given; else the current directory when it holds a takeover.toml;
    else, for a command that cannot work without a workspace (data, train, dagger, ...), the
    current directory all the same (its errors then name what is missing there), and None for
    one that can (run and drive: no recording, the robot of the default config)."""
    if arg is not None:
        return arg.expanduser()
    if (Path.cwd() / CONFIG_FILENAME).is_file():
        return Path.cwd()
    return Path(".") if required else None


def init_workspace(directory: Path) -> Path:
    """Create a workspace (directories and a commented takeover.toml). Refuses to overwrite an
    existing takeover.toml."""
    directory = directory.expanduser()
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory")
    config_path = directory / CONFIG_FILENAME
    if config_path.exists():
        raise UsageError(f"{config_path} already exists; this is a workspace already")
    # The template must stay valid: parse it before writing.
    config_from_dict(tomllib.loads(CONFIG_TEMPLATE), "template")
    (directory / "rounds").mkdir(parents=True, exist_ok=True)
    (directory / "models").mkdir(parents=True, exist_ok=True)
    tmp = config_path.with_name(f".{CONFIG_FILENAME}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(CONFIG_TEMPLATE)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, config_path)
    return directory
