"""The Arbiter names the input that made an observation stale, and since when (issue 15 B.3):
links that stamp each input (`Observation.input_t_ns`) get "scan 262 ms old", not "observation
262 ms old"; an input that never arrived is named as missing."""

from __future__ import annotations

import numpy as np

from takeover.config import SafetyConfig
from takeover.control.arbiter import Arbiter, OperatorInput
from takeover.types import Command, Mode, Observation

NOW = 10_000_000_000
SCAN = np.full(180, 5.0, dtype=np.float32)
IMAGE = np.zeros((4, 4, 3), dtype=np.uint8)
HELD = OperatorInput(deadman=True, command=Command(0.2, 0.0), deflection=0.5)


def reason(observation: Observation) -> tuple[Mode, str]:
    d = Arbiter(SafetyConfig()).decide(NOW, observation, True, HELD, None, 0.05)
    return d.mode, d.reason


def test_the_stalest_input_is_named_with_its_age() -> None:
    scan_at = NOW - 262_000_000  # a 4 Hz LiDAR, odometry and camera fresh
    obs = Observation(t_ns=scan_at, scan_m=SCAN, image=IMAGE, input_t_ns={
        "odom": NOW - 5_000_000, "scan": scan_at, "image": NOW - 30_000_000})
    assert reason(obs) == (Mode.LINK_LOST, "scan 262 ms old (limit 250)")


def test_an_input_that_never_arrived_is_named_as_missing() -> None:
    awaited_since = NOW - 3_000_000_000  # the link has waited 3 s for its first image
    obs = Observation(t_ns=awaited_since, scan_m=SCAN, image=None, input_t_ns={
        "odom": NOW - 5_000_000, "scan": NOW - 40_000_000, "image": awaited_since})
    assert reason(obs) == (Mode.LINK_LOST, "no image received for 3000 ms (limit 250)")


def test_a_fresh_observation_passes_and_one_stamp_keeps_the_old_wording() -> None:
    fresh = Observation(t_ns=NOW - 40_000_000, scan_m=SCAN, input_t_ns={
        "odom": NOW - 5_000_000, "scan": NOW - 40_000_000})
    assert reason(fresh)[0] is Mode.IDLE
    assert reason(Observation(t_ns=NOW - 300_000_000, scan_m=SCAN)) == (
        Mode.LINK_LOST, "observation 300 ms old (limit 250)")
