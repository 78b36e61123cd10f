"""Demonstration noise (DART): the noise process, and the loop applying it only where allowed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from takeover.config import DemonstrationConfig, SafetyConfig, config_from_dict
from takeover.control.arbiter import Arbiter, OperatorEvent, OperatorInput
from takeover.control.loop import ControlLoop
from takeover.control.perturbation import CommandPerturbation
from takeover.errors import ConfigError
from takeover.sim.link import SimLink
from takeover.types import Command, Mode, Observation

RATE_HZ = 20.0


def test_noise_has_the_configured_spread_and_correlation_time() -> None:
    cfg = DemonstrationConfig(noise_v_mps=0.05, noise_w_radps=0.2, tau_s=0.5)
    p = CommandPerturbation(cfg, RATE_HZ, seed=1)
    samples = np.array([[c.v_mps, c.w_radps] for c in
                        (p.apply(Command(0.0, 0.0)) for _ in range(40_000))])
    assert samples[:, 0].std() == pytest.approx(0.05, rel=0.1)
    assert samples[:, 1].std() == pytest.approx(0.2, rel=0.1)
    # An Ornstein-Uhlenbeck process: the correlation after tau is 1/e.
    lag = round(0.5 * RATE_HZ)
    w = samples[:, 1]
    corr = np.corrcoef(w[:-lag], w[lag:])[0, 1]
    assert corr == pytest.approx(math.exp(-1), abs=0.06)


def test_rest_forgets_the_push_and_reseed_repeats_it() -> None:
    cfg = DemonstrationConfig(noise_w_radps=0.3)
    a = CommandPerturbation(cfg, RATE_HZ, seed=7)
    first = [a.apply(Command(0.1, 0.0)) for _ in range(5)]
    a.reseed(7)
    assert [a.apply(Command(0.1, 0.0)) for _ in range(5)] == first
    a.rest()
    # Right after a rest the offset is a single innovation, far smaller than the spread.
    fresh = a.apply(Command(0.0, 0.0))
    assert abs(fresh.w_radps) < 0.3


class Steady:
    """An operator holding the deadman with a constant command (or releasing it)."""

    def __init__(self) -> None:
        self.deadman = True

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        return OperatorInput(deadman=self.deadman, command=Command(0.2, 0.0))


class Zero:
    def propose(self, obs: Observation) -> Command | None:
        return Command(0.2, 0.0)

    def drop_queued_actions(self) -> None: ...

    def reset(self) -> None: ...


def test_loop_perturbs_demonstrations_only_and_records_the_operator_command() -> None:
    link = SimLink("sim://?fast=1", seed=4)
    link.connect()
    operator = Steady()
    noise = CommandPerturbation(DemonstrationConfig(noise_w_radps=0.3), RATE_HZ, seed=3)
    loop = ControlLoop(link, Arbiter(SafetyConfig(), policy_available=True), operator,
                       policy=Zero(), rate_hz=RATE_HZ, perturbation=noise)
    try:
        loop.post(OperatorEvent.MANUAL)
        manual = [loop.tick() for _ in range(60)]
        assert all(r.mode is Mode.MANUAL and r.action_mode == -1 for r in manual)
        assert all(r.human_action == Command(0.2, 0.0) for r in manual), \
            "the label is the operator's own command"
        sent_w = np.array([r.command.w_radps for r in manual])
        assert np.abs(sent_w).max() > 0.05, "the sent command carries the push"
        limit = SafetyConfig().manual.max_w_radps
        assert np.abs(sent_w).max() <= limit + 1e-9, "the Arbiter's limits still apply"

        operator.deadman = False  # letting go stops the robot at once, noise or not
        released = loop.tick()
        assert released.command == Command(0.0, 0.0)
        operator.deadman = True

        loop.post(OperatorEvent.AUTO)
        auto = [loop.tick() for _ in range(20)][1:]
        assert all(r.mode is Mode.AUTO for r in auto)
        assert all(r.command.w_radps == 0.0 for r in auto), "the policy's driving is never pushed"
    finally:
        link.close()


def test_config_rejects_unreasonable_noise() -> None:
    assert config_from_dict({"demonstration": {"noise_w_radps": 0.2}}).demonstration.active
    with pytest.raises(ConfigError, match="noise_w_radps"):
        config_from_dict({"demonstration": {"noise_w_radps": 3.0}})
    with pytest.raises(ConfigError, match="tau_s"):
        config_from_dict({"demonstration": {"tau_s": 0.0}})
