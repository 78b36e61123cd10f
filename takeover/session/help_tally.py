"""Help requests and the operator's attention over headless episodes (`takeover drive --json`,
`takeover bench supervision`).

Per episode, from the records the loop produced (no recording needed): the columns that
`dagger.metrics.episode_help_counts` reads from an episode file (loop time, mode, action_mode,
help requested), handed to that function, so `drive --json` and the round metrics count a
request, a robot-gated and a human-gated takeover, a false alarm and a missed failure the same
way. The caller passes the function in (`HelpCounter`): dagger/ sits above session/ in the
layering (.importlinter), and the counting must have one home. Beside them, the
simulated operator's own clock (inputs/operator_sim.py): `attention_s`, the seconds it had to
look (all of AUTO and its driving in human-gated supervision; from each request to its answer,
plus its driving, in robot-gated), and `driving_s`, the seconds it drove (TAKEOVER, human
commands). And `retries`: how often the robot backed out of a misaligned approach by itself
(the Arbiter's retry, control/realign.py: AUTO steps with the source `reset`), which asked
nobody.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from takeover.inputs.operator_sim import SimulatedOperator
from takeover.recorder.schema import ACTION_MODE_UNLABELED, MODE_CODES
from takeover.types import CommandSource, Mode, StepRecord

#: The per-episode and total fields this module adds to `drive --json`.
HELP_FIELDS = ("requests", "robot_gated", "human_gated", "false_alarms", "missed_failures",
               "retries", "attention_s", "driving_s")


_COUNTS = ("requests", "robot_gated", "human_gated", "false_alarms", "missed_failures")


class CountsOfHelp(Protocol):
    """What a HelpCounter returns (dagger.metrics.HelpCounts)."""

    @property
    def requests(self) -> int: ...
    @property
    def robot_gated(self) -> int: ...
    @property
    def human_gated(self) -> int: ...
    @property
    def false_alarms(self) -> int: ...
    @property
    def missed_failures(self) -> int: ...


class HelpCounter(Protocol):
    """dagger.metrics.episode_help_counts: one episode's counts from its per-step columns."""

    def __call__(self, t_ns: np.ndarray, mode: np.ndarray, action_mode: np.ndarray,
                 help_requested: np.ndarray | None, outcome: str, rate_hz: float
                 ) -> CountsOfHelp: ...


@dataclass(frozen=True)
class EpisodeHelp:
    """One episode's help figures (HELP_FIELDS). attention_s None: nobody was modelled
    watching (the expert, a scripted deadman holder)."""

    requests: int
    robot_gated: int
    human_gated: int
    false_alarms: int
    missed_failures: int
    attention_s: float | None
    driving_s: float
    retries: int = 0

    def as_json(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in _COUNTS}, "retries": self.retries,
                "attention_s": None if self.attention_s is None else round(self.attention_s, 3),
                "driving_s": round(self.driving_s, 3)}


def help_totals(episodes: list[EpisodeHelp]) -> dict[str, Any]:
    """The HELP_FIELDS summed over episodes (attention_s None when no episode had a watcher)."""
    watched = [e.attention_s for e in episodes if e.attention_s is not None]
    counts = {k: sum(getattr(e, k) for e in episodes) for k in _COUNTS}
    return EpisodeHelp(**counts, attention_s=sum(watched) if watched else None,
                       driving_s=sum(e.driving_s for e in episodes),
                       retries=sum(e.retries for e in episodes)).as_json()


class HelpTally:
    """Fed every record of an episode (`on_record`); `start()` at its start, `finish(outcome)`
    at its end. `operator`: the simulated operator whose attention is counted, if any."""

    def __init__(self, count: HelpCounter, rate_hz: float,
                 operator: SimulatedOperator | None = None) -> None:
        self.count = count
        self.rate_hz = rate_hz
        self.operator = operator
        self.start()

    def start(self) -> None:
        self._t_ns: list[int] = []
        self._mode: list[int] = []
        self._action_mode: list[int] = []
        self._requested: list[bool] = []
        self._human_steps = 0
        self._attention_s = 0.0
        self._retries = 0
        self._backing_out = False

    def on_record(self, rec: StepRecord) -> None:
        self._t_ns.append(rec.t_ns)
        self._mode.append(MODE_CODES[rec.mode])
        self._action_mode.append(ACTION_MODE_UNLABELED if rec.action_mode is None
                                 else rec.action_mode)
        self._requested.append(rec.help is not None and rec.help.requested)
        if rec.source is CommandSource.HUMAN:
            self._human_steps += 1
        backing_out = rec.mode is Mode.AUTO and rec.source is CommandSource.RESET
        if backing_out and not self._backing_out:
            self._retries += 1
        self._backing_out = backing_out
        if self.operator is not None:
            # As of the episode's last record: after it the runner may keep the loop ticking
            # (stopping the robot, waiting for a charge under way), which is not the episode.
            self._attention_s = self.operator.attention_s

    def finish(self, outcome: str) -> EpisodeHelp:
        counts = self.count(
            np.asarray(self._t_ns, dtype=np.int64), np.asarray(self._mode, dtype=np.int16),
            np.asarray(self._action_mode, dtype=np.int16),
            np.asarray(self._requested, dtype=bool), outcome, self.rate_hz)
        attention = None if self.operator is None else self._attention_s
        return EpisodeHelp(**{k: int(getattr(counts, k)) for k in _COUNTS},
                           attention_s=attention, driving_s=self._human_steps / self.rate_hz,
                           retries=self._retries)
