"""Demonstration noise (DART): push the robot off the operator's path while they demonstrate.

A policy cloned from clean demonstrations has only seen the states the demonstrator visits; its
own small errors take it to states it has never seen, and the errors compound (covariate
shift). DART (Laskey et al., 2017, "DART: Noise Injection for Robust Imitation Learning")
injects noise into the *executed* command during the demonstrations while recording what the
demonstrator *asked for*: the operator (or the scripted expert) corrects the pushes, and the
data then holds the states next to the nominal path together with the correction that brings
the robot back.

Here the noise is an Ornstein-Uhlenbeck process per axis (stationary standard deviation
`noise_v_mps` / `noise_w_radps`, correlation time `tau_s`): white noise at 20 Hz would be
averaged out by the base's acceleration limits and actuation delay before it moved the robot.
It is added only in MANUAL (demonstrations), only while the deadman is held, before the
Arbiter, so every speed and acceleration limit still applies; releasing the deadman stops the
robot as always. The recorder keeps the operator's command (`human_action`, the label policies
learn from by default) apart from the command sent (`action`).
"""

from __future__ import annotations

import math

import numpy as np

from takeover.config import DemonstrationConfig
from takeover.types import Command


class CommandPerturbation:
    """The noise process. `apply` advances it by one tick and returns the perturbed command;
    `rest` forgets its state (deadman released, mode changed) so a push never outlives the
    demonstration it was part of."""

    def __init__(self, config: DemonstrationConfig, rate_hz: float, seed: int = 0) -> None:
        self.config = config
        self.decay = math.exp(-1.0 / (rate_hz * max(config.tau_s, 1e-3)))
        self.innovation = math.sqrt(1.0 - self.decay ** 2)
        self.sigma = np.array([config.noise_v_mps, config.noise_w_radps], dtype=np.float64)
        self._rng = np.random.default_rng(seed)
        self._state = np.zeros(2, dtype=np.float64)  # (v_mps, w_radps) offsets

    def reseed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self.rest()

    def rest(self) -> None:
        self._state[:] = 0.0

    def apply(self, command: Command) -> Command:
        self._state = self.decay * self._state + self.innovation * self.sigma * \
            self._rng.standard_normal(2)
        return Command(command.v_mps + float(self._state[0]), command.w_radps + float(self._state[1]))
