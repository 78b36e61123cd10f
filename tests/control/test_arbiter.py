"""One test per Arbiter rule (docs/safety.md)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from takeover.config import SafetyConfig, SpeedLimits
from takeover.control.arbiter import ESTOP_RELEASE_WAIT_MS, Arbiter, OperatorEvent, OperatorInput
from takeover.types import Command, CommandSource, Mode, Observation

DT = 0.05
FRESH_LIMIT_NS = int(250e6)


# A LiDAR scan in open space (every beam returns at 5 m), so that the protective field
# (tests/control/test_field*.py) lets every rule here be about the rule.
OPEN_SCAN = np.full(180, 5.0, dtype=np.float32)


def obs(t_ns: int = 0, **kw: object) -> Observation:
    kw.setdefault("scan_m", OPEN_SCAN)
    return Observation(t_ns=t_ns, **kw)  # type: ignore[arg-type]


def held(v: float = 0.3, w: float = 0.0, deflection: float = 0.5) -> OperatorInput:
    return OperatorInput(deadman=True, command=Command(v, w), deflection=deflection)


def released() -> OperatorInput:
    return OperatorInput(deadman=False, command=Command(0.3, 0.0), deflection=0.5)


def fast_accel() -> SafetyConfig:
    """Acceleration limits out of the way, for rules that are not about them."""
    return SafetyConfig(accel_v_mps2=100.0, accel_w_radps2=100.0, decel_v_mps2=100.0,
                        decel_w_radps2=100.0)


def decide(arb: Arbiter, operator: OperatorInput, proposal: Command | None = None,
           now_ns: int = 0, observation: Observation | None = None, link: bool = True):
    return arb.decide(now_ns, observation if observation is not None else obs(now_ns), link,
                      operator, proposal, DT)


def test_starts_idle_and_sends_zero() -> None:
    arb = Arbiter(SafetyConfig())
    d = decide(arb, held())
    assert d.mode is Mode.IDLE and d.command == Command(0, 0) and d.source is CommandSource.NONE


def test_manual_with_deadman_held_drives_as_demonstration() -> None:
    arb = Arbiter(fast_accel())
    arb.handle(OperatorEvent.MANUAL)
    d = decide(arb, held(0.3, 0.2))
    assert d.command == Command(0.3, 0.2)
    assert d.source is CommandSource.HUMAN and d.action_mode == -1


def test_deadman_release_stops_at_once() -> None:
    arb = Arbiter(fast_accel())
    arb.handle(OperatorEvent.MANUAL)
    assert decide(arb, held(0.4)).command.v_mps == pytest.approx(0.4)
    d = decide(arb, released())
    assert d.command == Command(0.0, 0.0), "zero on the very tick the deadman is released"
    assert d.mode is Mode.MANUAL and "deadman" in d.reason


def test_deadman_required_in_auto_by_default() -> None:
    arb = Arbiter(fast_accel(), policy_available=True)
    arb.handle(OperatorEvent.AUTO)
    assert decide(arb, OperatorInput(deadman=True), Command(0.2, 0.1)).command == Command(0.2, 0.1)
    d = decide(arb, OperatorInput(deadman=False), Command(0.2, 0.1))
    assert d.command == Command(0, 0) and d.mode is Mode.AUTO


def test_auto_without_deadman_when_configured() -> None:
    arb = Arbiter(SafetyConfig(deadman_in_auto=False, accel_v_mps2=100), policy_available=True)
    arb.handle(OperatorEvent.AUTO)
    d = decide(arb, OperatorInput(deadman=False), Command(0.2, 0.0))
    assert d.command == Command(0.2, 0.0) and d.source is CommandSource.POLICY and d.action_mode == 0


def test_auto_refused_without_policy() -> None:
    arb = Arbiter(SafetyConfig(), policy_available=False)
    arb.handle(OperatorEvent.AUTO)
    assert arb.mode is Mode.IDLE and "no policy" in arb.reason


def test_stick_deflection_takes_over_at_once_and_drops_the_chunk() -> None:
    arb = Arbiter(fast_accel(), policy_available=True)
    arb.handle(OperatorEvent.AUTO)
    decide(arb, OperatorInput(deadman=True), Command(0.2, 0.0))
    d = decide(arb, held(-0.1, 0.5, deflection=0.6), Command(0.2, 0.0))
    assert d.mode is Mode.TAKEOVER and d.drop_policy_queue
    assert d.command == Command(0.0, 0.5)  # v reverses sign: through zero first
    assert decide(arb, held(-0.1, 0.5, deflection=0.6)).command == Command(-0.1, 0.5)
    assert d.source is CommandSource.HUMAN and d.action_mode == 1
    # Stays in TAKEOVER: returning to AUTO is an explicit action.
    d = decide(arb, held(0.0, 0.0, deflection=0.0), Command(0.2, 0.0), now_ns=int(10e9),
               observation=obs(int(10e9)))
    assert d.mode is Mode.TAKEOVER and not d.drop_policy_queue
    arb.handle(OperatorEvent.AUTO)
    assert decide(arb, OperatorInput(deadman=True), Command(0.2, 0.0)).mode is Mode.AUTO


def test_takeover_button_switches_in_auto() -> None:
    arb = Arbiter(fast_accel(), policy_available=True)
    arb.handle(OperatorEvent.AUTO)
    arb.handle(OperatorEvent.TAKEOVER)
    d = decide(arb, held(0.1, 0.0, deflection=0.1))
    assert d.mode is Mode.TAKEOVER and d.drop_policy_queue and d.command == Command(0.1, 0.0)


def test_small_deflection_below_threshold_does_not_take_over() -> None:
    arb = Arbiter(fast_accel(), policy_available=True)
    arb.handle(OperatorEvent.AUTO)
    d = decide(arb, OperatorInput(deadman=True, deflection=0.1), Command(0.2, 0.0))
    assert d.mode is Mode.AUTO


def test_auto_resume_after_sticks_centred_when_configured() -> None:
    arb = Arbiter(SafetyConfig(auto_resume_centered_s=1.0), policy_available=True)
    arb.handle(OperatorEvent.AUTO)
    arb.handle(OperatorEvent.TAKEOVER)
    t = 0
    for _ in range(25):  # 1.25 s of centred sticks at 20 Hz
        d = decide(arb, OperatorInput(deadman=True, deflection=0.0), now_ns=t, observation=obs(t))
        t += int(DT * 1e9)
    assert d.mode is Mode.AUTO


def test_estop_latches_and_needs_acknowledgement() -> None:
    arb = Arbiter(fast_accel(), policy_available=True)
    arb.handle(OperatorEvent.MANUAL)
    arb.handle(OperatorEvent.ESTOP)
    d = decide(arb, held())
    assert d.mode is Mode.ESTOP and d.command == Command(0, 0)
    # Mode requests are refused while latched; nothing restarts motion by itself.
    arb.handle(OperatorEvent.MANUAL)
    arb.handle(OperatorEvent.AUTO)
    for _ in range(5):
        assert decide(arb, held()).mode is Mode.ESTOP
    arb.handle(OperatorEvent.ACKNOWLEDGE)
    d = decide(arb, held())
    assert d.mode is Mode.IDLE and d.command == Command(0, 0), "acknowledging lands in IDLE"


def test_base_estop_latches_and_ack_refused_while_engaged() -> None:
    arb = Arbiter(fast_accel())
    arb.handle(OperatorEvent.MANUAL)
    d = decide(arb, held(), observation=obs(0, estop=True))
    assert d.mode is Mode.ESTOP and d.command == Command(0, 0)
    arb.handle(OperatorEvent.ACKNOWLEDGE)
    # The base may report the release a few state messages later: the acknowledgement waits
    # (zero command) up to ESTOP_RELEASE_WAIT_MS, then is refused if the flag is still there.
    wait_ns = int(ESTOP_RELEASE_WAIT_MS * 1e6)
    for t in (0, wait_ns // 2, wait_ns - 1):
        d = decide(arb, held(), now_ns=t, observation=obs(t, estop=True))
        assert d.mode is Mode.ESTOP and d.command == Command(0, 0) and "waiting" in d.reason
    d = decide(arb, held(), now_ns=wait_ns, observation=obs(wait_ns, estop=True))
    assert d.mode is Mode.ESTOP and "still engaged" in d.reason
    arb.handle(OperatorEvent.ACKNOWLEDGE)
    t = wait_ns + 50_000_000
    assert decide(arb, held(), now_ns=t, observation=obs(t, estop=False)).mode is Mode.IDLE


def test_acknowledgement_waits_for_the_release_then_applies_what_followed() -> None:
    arb = Arbiter(fast_accel())
    decide(arb, held(), observation=obs(0, estop=True))
    arb.handle(OperatorEvent.ACKNOWLEDGE)
    arb.handle(OperatorEvent.MANUAL)
    assert decide(arb, held(), now_ns=1, observation=obs(1, estop=True)).mode is Mode.ESTOP
    assert decide(arb, held(), now_ns=2, observation=obs(2)).mode is Mode.MANUAL


def test_a_new_estop_voids_a_waiting_acknowledgement() -> None:
    arb = Arbiter(fast_accel())
    decide(arb, held(), observation=obs(0, estop=True))
    arb.handle(OperatorEvent.ACKNOWLEDGE)
    arb.handle(OperatorEvent.MANUAL)
    decide(arb, held(), now_ns=1, observation=obs(1, estop=True))
    arb.handle(OperatorEvent.ESTOP)  # pressed again while the first one was being released
    d = decide(arb, held(), now_ns=2, observation=obs(2))
    assert d.mode is Mode.ESTOP and d.command == Command(0, 0)


def test_link_loss_latches_and_needs_acknowledgement() -> None:
    arb = Arbiter(fast_accel())
    arb.handle(OperatorEvent.MANUAL)
    d = decide(arb, held(), link=False)
    assert d.mode is Mode.LINK_LOST and d.command == Command(0, 0)
    # The link comes back: still latched.
    d = decide(arb, held())
    assert d.mode is Mode.LINK_LOST and d.command == Command(0, 0)
    arb.handle(OperatorEvent.ACKNOWLEDGE)
    assert decide(arb, held()).mode is Mode.IDLE


def test_stale_observation_is_link_loss() -> None:
    arb = Arbiter(fast_accel())
    arb.handle(OperatorEvent.MANUAL)
    now = 10**10
    d = decide(arb, held(), now_ns=now, observation=obs(now - FRESH_LIMIT_NS - 1))
    assert d.mode is Mode.LINK_LOST and d.command == Command(0, 0) and "old" in d.reason
    arb.handle(OperatorEvent.ACKNOWLEDGE)
    d = decide(arb, held(), now_ns=now, observation=obs(now - FRESH_LIMIT_NS - 1))
    assert d.mode is Mode.LINK_LOST, "acknowledge refused while still stale"


def test_speed_limits_clamp_per_mode() -> None:
    s = SafetyConfig(manual=SpeedLimits(0.3, 1.0), auto=SpeedLimits(0.2, 0.5),
                     accel_v_mps2=100, accel_w_radps2=100, decel_v_mps2=100, decel_w_radps2=100)
    arb = Arbiter(s, policy_available=True)
    arb.handle(OperatorEvent.MANUAL)
    assert decide(arb, held(0.9, -3.0)).command == Command(0.3, -1.0)
    arb.handle(OperatorEvent.AUTO)
    assert decide(arb, OperatorInput(deadman=True), Command(0.9, 0.9)).command == Command(0.2, 0.0)
    assert decide(arb, OperatorInput(deadman=True), Command(0.9, 0.9)).command == Command(0.2, 0.5)


def test_acceleration_limit_ramps_up_but_stop_is_immediate() -> None:
    s = SafetyConfig(accel_v_mps2=1.0, decel_v_mps2=2.0)
    arb = Arbiter(s)
    arb.handle(OperatorEvent.MANUAL)
    vs = [decide(arb, held(0.5)).command.v_mps for _ in range(12)]
    assert vs[0] == pytest.approx(0.05)  # 1.0 m/s^2 * 50 ms
    assert all(b - a <= 0.05 + 1e-9 for a, b in itertools.pairwise(vs))
    assert vs[-1] == pytest.approx(0.5)
    assert decide(arb, held(0.2)).command.v_mps == pytest.approx(0.4)  # decel 2.0 m/s^2
    assert decide(arb, held(0.0)).command == Command(0, 0), "a stop is never rate-limited"


def test_sign_reversal_goes_through_zero() -> None:
    arb = Arbiter(SafetyConfig(accel_v_mps2=100, decel_v_mps2=100))
    arb.handle(OperatorEvent.MANUAL)
    decide(arb, held(0.3))
    assert decide(arb, held(-0.3)).command.v_mps == 0.0


@pytest.mark.parametrize("bad", [Command(math.nan, 0.0), Command(0.0, math.inf),
                                 Command(5.0, 0.0), Command(0.1, -40.0)])
def test_nan_or_out_of_range_policy_output_stops_the_robot(bad: Command) -> None:
    arb = Arbiter(fast_accel(), policy_available=True)
    arb.handle(OperatorEvent.AUTO)
    assert decide(arb, OperatorInput(deadman=True), Command(0.2, 0.0)).command.v_mps > 0
    d = decide(arb, OperatorInput(deadman=True), bad)
    assert d.command == Command(0, 0) and d.mode is Mode.IDLE and "policy fault" in d.reason
    # It does not restart by itself when the policy recovers.
    assert decide(arb, OperatorInput(deadman=True), Command(0.2, 0.0)).command == Command(0, 0)


def test_nan_operator_input_stops() -> None:
    arb = Arbiter(fast_accel())
    arb.handle(OperatorEvent.MANUAL)
    d = decide(arb, OperatorInput(deadman=True, command=Command(math.nan, 0.0)))
    assert d.command == Command(0, 0)


def test_input_device_lost_while_driving_stops() -> None:
    arb = Arbiter(fast_accel())
    arb.handle(OperatorEvent.MANUAL)
    decide(arb, held(0.3))
    d = decide(arb, OperatorInput(deadman=True, command=Command(0.3, 0), connected=False))
    assert d.command == Command(0, 0) and d.mode is Mode.IDLE and "lost" in d.reason


def test_waits_in_idle_for_first_observation_without_latching() -> None:
    arb = Arbiter(SafetyConfig())
    d = arb.decide(0, None, True, held(), None, DT)
    assert d.mode is Mode.IDLE and "waiting" in d.reason


def test_request_right_after_acknowledge_applies_once_cleared() -> None:
    arb = Arbiter(fast_accel())
    arb.handle(OperatorEvent.ESTOP)
    decide(arb, held())
    arb.handle(OperatorEvent.ACKNOWLEDGE)
    arb.handle(OperatorEvent.MANUAL)  # same batch of events as the acknowledgement
    d = decide(arb, held(0.2))
    assert d.mode is Mode.MANUAL and d.command == Command(0.2, 0.0)


def test_request_after_refused_acknowledge_is_dropped() -> None:
    arb = Arbiter(fast_accel())
    arb.handle(OperatorEvent.MANUAL)
    decide(arb, held(), link=False)
    arb.handle(OperatorEvent.ACKNOWLEDGE)
    arb.handle(OperatorEvent.MANUAL)
    d = decide(arb, held(), link=False)
    assert d.mode is Mode.LINK_LOST and d.command == Command(0, 0)
    d = decide(arb, held())  # link back: still latched, the MANUAL request did not survive
    assert d.mode is Mode.LINK_LOST
