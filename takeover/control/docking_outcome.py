"""Docking outcome detection from what a real base reports ([docking], docs/configuration.md).

A simulator knows whether the robot docked; a real base does not say so. What it has, and what
Nav2's docking server (opennav_docking) relies on, is the battery: once the charger's contacts
mate, `sensor_msgs/BatteryState.current` turns to charging (above a threshold once its sign is
normalised: bases disagree on the sign) and `power_supply_status` to CHARGING or FULL. So:

- **docked**: charging, by either signal, held continuously for `charge_confirm_ms` (a contact
  bounce or one noisy reading is not a dock); or, with `use_docked_topic`, the base's own docked
  flag held as long.
- **failure**: a bumper contact with no charging within `charge_confirm_ms` of it (the robot
  touched the dock, or anything else, without the contacts mating); no progress (odometry moved
  less than `stall_distance_m` and turned less than `stall_angle_deg`) for `stall_s`; or
  `timeout_s` since the first tick, after a grace: at `timeout_s` the attempt is in overtime
  (`pending`, so the runner stops the robot) for up to `charge_wait_s` more, and a charge that
  shows in it is still a dock. A robot that reached the charger just before the deadline is
  charging there, but a BatteryState at 1-2 Hz may not say so for another half second; without
  the grace such an attempt was labelled a timeout (3 of 50 attempts over rosbridge).
- when the attempt ends before any of that (the operator stopped it, a fault latched, the host's
  step limit): `conclude` gives the verdict, with the reason as evidence.

**At the dock** (with `dock_threshold_m` > 0 and the docked pose known, `docked_pose`): the
robot stopped (odometry speed under
`AT_DOCK_STOPPED_MPS`) within `dock_threshold_m` of where it stood the last time it charged is
at the dock once it has driven in this attempt, as opennav_docking's `isDocked` judges by the
dock pose: nothing is decided on it,
but it is a contact being confirmed (`pending`), so the attempt stops driving and the charge is
awaited. A BatteryState at 1-2 Hz can show the charge half a second after the contact; a policy
that keeps driving meanwhile may leave the charger before the charge is ever seen.

The first decision is final: an attempt that stalled and was later pushed onto the dock failed.
Every decision carries its evidence, a small JSON-able dict: which signal decided, at what
`t_ns` (the tick's clock), and its value, e.g. ``{"signal": "battery_current", "t_ns": ...,
"value_a": 1.48, "held_ms": 520.0}``.

Pure logic on Observations and tick times: no clock, no I/O, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from takeover.config import DockingConfig
from takeover.types import (
    POWER_SUPPLY_STATUS_CHARGING,
    POWER_SUPPLY_STATUS_FULL,
    POWER_SUPPLY_STATUS_NAMES,
    Observation,
    Outcome,
    Pose2D,
)

#: The evidence's `signal` values.
SIGNAL_CURRENT = "battery_current"
SIGNAL_STATUS = "power_supply_status"
SIGNAL_DOCKED_TOPIC = "docked_topic"
SIGNAL_BUMPER = "bumper"
SIGNAL_STALL = "stall"
SIGNAL_TIMEOUT = "timeout"
SIGNAL_OPERATOR = "operator"
SIGNAL_NO_CHARGE = "no_charge"  # the attempt stopped (e.g. at the dock) and no charge showed
SIGNALS = (SIGNAL_CURRENT, SIGNAL_STATUS, SIGNAL_DOCKED_TOPIC, SIGNAL_BUMPER, SIGNAL_STALL,
           SIGNAL_TIMEOUT, SIGNAL_OPERATOR, SIGNAL_NO_CHARGE)

_CHARGING_STATUSES = (POWER_SUPPLY_STATUS_CHARGING, POWER_SUPPLY_STATUS_FULL)

#: At the docked pose, slower than this counts as stopped there (blocked by the dock).
AT_DOCK_STOPPED_MPS = 0.02


@dataclass(frozen=True)
class DetectedOutcome:
    """A decision and why: `evidence` holds `signal`, `t_ns` and the signal's own figures."""

    outcome: Outcome
    evidence: dict[str, Any]

    @property
    def signal(self) -> str:
        return str(self.evidence["signal"])

    def as_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, **self.evidence}


def _ms(ns: int) -> float:
    return round(ns / 1e6, 1)


class DockingOutcomeDetector:
    """Fed one Observation per control tick (`update`), decides once how the attempt ended.

    t_ns: the tick's time on one monotonic clock (the control loop's); held durations, the
    stall and the timeout are measured on it, not on the observations' own stamps, so a link
    that repeats its newest reading (BatteryState at 1-2 Hz) holds it for as long as it stays
    the newest.
    """

    def __init__(self, config: DockingConfig | None = None,
                 docked_pose: Pose2D | None = None) -> None:
        """docked_pose: where the robot stands when docked (odometry frame), if known: the
        docking lifecycle's anchor (control/reset_planner.py)."""
        self.config = config or DockingConfig()
        self.docked_pose = docked_pose
        self._sign = -1.0 if self.config.current_sign == "negative" else 1.0
        self._confirm_ns = round(self.config.charge_confirm_ms * 1e6)
        self._stall_ns = round(self.config.stall_s * 1e9)
        self._timeout_ns = round(self.config.timeout_s * 1e9)
        self._grace_ns = round(self.config.charge_wait_s * 1e9)
        self._stall_rad = math.radians(self.config.stall_angle_deg)
        self.reset()

    def reset(self) -> None:
        """Forget the attempt: the next update starts a new one."""
        self.decided: DetectedOutcome | None = None
        self._first_ns: int | None = None
        self._charge_since_ns: int | None = None
        self._docked_since_ns: int | None = None
        self._contact_since_ns: int | None = None
        self._at_dock_since_ns: int | None = None
        self._overtime_since_ns: int | None = None  # timeout_s passed: the grace has begun
        self._driven = False  # the odometry has shown motion in this attempt
        self._anchor: tuple[float, float, float] | None = None  # (x_m, y_m, yaw_rad)
        self._anchor_ns = 0
        self._last_ns = 0

    # --- signals -------------------------------------------------------------------------------

    def normalised_current_a(self, obs: Observation) -> float | None:
        """The current with charging positive, or None when the base does not report one."""
        current = obs.battery_current_a
        if current is None or not math.isfinite(current):
            return None
        return self._sign * current

    def charging_signal(self, obs: Observation) -> str | None:
        """Which signal says the battery charges now (the current first), or None."""
        current = self.normalised_current_a(obs)
        if current is not None and current > self.config.charging_current_a:
            return SIGNAL_CURRENT
        if obs.power_supply_status in _CHARGING_STATUSES:
            return SIGNAL_STATUS
        return None

    @property
    def pending(self) -> bool:
        """Undecided, with charging or a contact seen and waiting on its confirm window."""
        return self.decided is None and (
            self._charge_since_ns is not None or self._contact_since_ns is not None
            or self._docked_since_ns is not None or self._at_dock_since_ns is not None
            or self._overtime_since_ns is not None)

    @property
    def overtime(self) -> bool:
        """Past `timeout_s`, undecided: the grace in which a charge already under way may show."""
        return self.decided is None and self._overtime_since_ns is not None

    @property
    def at_dock(self) -> bool:
        """Stopped at the docked pose (see the module doc), undecided."""
        return self.decided is None and self._at_dock_since_ns is not None

    # --- the decision --------------------------------------------------------------------------

    def update(self, obs: Observation | None, t_ns: int) -> DetectedOutcome | None:
        """One tick: the decision once there is one (then always the same), else None. A tick
        without an observation only advances the clocks (stall, timeout)."""
        if self.decided is not None:
            return self.decided
        if self._first_ns is None:
            self._first_ns = t_ns
        self._last_ns = t_ns
        if obs is not None:
            self._at_dock(obs, t_ns)
            decision = self._charge(obs, t_ns) or self._contact(obs, t_ns) \
                or self._progress(obs, t_ns)
            if decision is not None:
                return self._decide(decision)
        if self._timeout_ns and t_ns - self._first_ns >= self._timeout_ns:
            if self._overtime_since_ns is None:
                self._overtime_since_ns = t_ns
            over = t_ns - self._overtime_since_ns
            # A charge being confirmed at the end of the grace gets its confirm window too.
            confirming = self._charge_since_ns is not None or self._docked_since_ns is not None
            if over >= self._grace_ns and (not confirming
                                           or over >= self._grace_ns + self._confirm_ns):
                return self._decide(DetectedOutcome(Outcome.FAILURE, {
                    "signal": SIGNAL_TIMEOUT, "t_ns": t_ns,
                    "elapsed_s": round((t_ns - self._first_ns) / 1e9, 3),
                    "limit_s": self.config.timeout_s, "grace_ms": _ms(over)}))
        return None

    def conclude(self, t_ns: int, reason: str, aborted: bool) -> DetectedOutcome:
        """The verdict of an attempt that ended before the detector decided: aborted (the
        operator stopped it, or a fault latched), a timeout (reason "timeout": the host's own
        step limit ran out first), else a failure for want of a charge (it stopped, at the dock
        or anywhere, and no charge showed)."""
        if self.decided is not None:
            return self.decided
        if aborted:
            return self._decide(DetectedOutcome(Outcome.ABORTED, {
                "signal": SIGNAL_OPERATOR, "t_ns": t_ns, "reason": reason}))
        elapsed = 0.0 if self._first_ns is None else (t_ns - self._first_ns) / 1e9
        signal = SIGNAL_TIMEOUT if reason == "timeout" else SIGNAL_NO_CHARGE
        return self._decide(DetectedOutcome(Outcome.FAILURE, {
            "signal": signal, "t_ns": t_ns, "elapsed_s": round(elapsed, 3), "reason": reason}))

    def _decide(self, decision: DetectedOutcome) -> DetectedOutcome:
        self.decided = decision
        return decision

    def _charge(self, obs: Observation, t_ns: int) -> DetectedOutcome | None:
        signal = self.charging_signal(obs)
        if signal is None:
            self._charge_since_ns = None
        else:
            self._contact_since_ns = None  # charging within the window: the contact mated
            if self._charge_since_ns is None:
                self._charge_since_ns = t_ns
            held = t_ns - self._charge_since_ns
            if held >= self._confirm_ns:
                evidence: dict[str, Any] = {"signal": signal, "t_ns": t_ns,
                                            "since_t_ns": self._charge_since_ns,
                                            "held_ms": _ms(held)}
                if obs.battery_current_a is not None and math.isfinite(obs.battery_current_a):
                    evidence["value_a"] = round(obs.battery_current_a, 4)  # as the base said it
                if obs.power_supply_status is not None:
                    evidence["status"] = POWER_SUPPLY_STATUS_NAMES.get(
                        obs.power_supply_status, str(obs.power_supply_status))
                return DetectedOutcome(Outcome.SUCCESS, evidence)
        if self.config.use_docked_topic:
            if not obs.docked:
                self._docked_since_ns = None
            else:
                if self._docked_since_ns is None:
                    self._docked_since_ns = t_ns
                held = t_ns - self._docked_since_ns
                if held >= self._confirm_ns:
                    return DetectedOutcome(Outcome.SUCCESS, {
                        "signal": SIGNAL_DOCKED_TOPIC, "t_ns": t_ns,
                        "since_t_ns": self._docked_since_ns, "held_ms": _ms(held)})
        return None

    def _at_dock(self, obs: Observation, t_ns: int) -> None:
        dock = self.docked_pose
        if dock is None or self.config.dock_threshold_m <= 0 or self._at_dock_since_ns is not None:
            return  # once at the dock, the attempt waits there for the charge
        odom = obs.odom
        stopped = abs(odom.v_mps) < AT_DOCK_STOPPED_MPS
        if not stopped:
            self._driven = True
            return
        # Stopped there after driving: an attempt that starts at rest next to the dock has
        # not arrived at it yet.
        near = math.hypot(odom.x_m - dock.x_m, odom.y_m - dock.y_m) <= self.config.dock_threshold_m
        if near and self._driven:
            self._at_dock_since_ns = t_ns

    def _contact(self, obs: Observation, t_ns: int) -> DetectedOutcome | None:
        if self._charge_since_ns is not None or (
                self.config.use_docked_topic and self._docked_since_ns is not None):
            return None  # charging (or docked) is being confirmed: a bumper then is the dock
        if obs.bumper and self._contact_since_ns is None:
            self._contact_since_ns = t_ns
        since = self._contact_since_ns
        if since is None or t_ns - since < self._confirm_ns:
            return None
        current = self.normalised_current_a(obs)
        evidence: dict[str, Any] = {"signal": SIGNAL_BUMPER, "t_ns": t_ns, "since_t_ns": since,
                                    "waited_ms": _ms(t_ns - since)}
        if current is not None:
            evidence["value_a"] = round(obs.battery_current_a or 0.0, 4)
        return DetectedOutcome(Outcome.FAILURE, evidence)

    def _progress(self, obs: Observation, t_ns: int) -> DetectedOutcome | None:
        odom = obs.odom
        pose = (odom.x_m, odom.y_m, odom.yaw_rad)
        anchor = self._anchor
        if anchor is None or self.pending:
            # Still: while a charge or a contact is being confirmed the robot is meant to be.
            self._anchor, self._anchor_ns = pose, t_ns
            return None
        moved = math.hypot(pose[0] - anchor[0], pose[1] - anchor[1])
        turned = abs(math.remainder(pose[2] - anchor[2], math.tau))
        if moved >= self.config.stall_distance_m or turned >= self._stall_rad:
            self._anchor, self._anchor_ns = pose, t_ns
            return None
        if t_ns - self._anchor_ns >= self._stall_ns:
            return DetectedOutcome(Outcome.FAILURE, {
                "signal": SIGNAL_STALL, "t_ns": t_ns, "since_t_ns": self._anchor_ns,
                "still_s": round((t_ns - self._anchor_ns) / 1e9, 3),
                "moved_m": round(moved, 4), "turned_deg": round(math.degrees(turned), 2)})
        return None
