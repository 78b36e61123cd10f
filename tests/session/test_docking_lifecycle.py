"""The docking lifecycle in the operator's session on the simulator run as a real base
(`sim://?fast=1&reset=drive`: no teleport, no docked flag, charging current on a good dock),
stepped tick by tick: a docked attempt detected and stored with its evidence, a relabel that
keeps it, "n" driving a reset to the start region, and auto-reset after a detected outcome."""

from __future__ import annotations

import math
import time
from pathlib import Path

import h5py
import pytest
from dock_support import place_at_dock
from tui_support import SCREEN_TEST_SAFETY, ConstantPolicy

from takeover.config import Config, DockingConfig, ResetConfig
from takeover.control.arbiter import OperatorEvent, OperatorInput
from takeover.control.reset_planner import MAX_FAILED_RESETS_IN_A_ROW
from takeover.hw.base import open_link
from takeover.recorder.reader import read_info
from takeover.recorder.store import EpisodeStore
from takeover.session.core_process import CoreSpec, RemoteSession
from takeover.session.operator import OperatorSession, SessionSnapshot
from takeover.sim.link import SimLink
from takeover.sim.world import ROBOT_RADIUS_M, generate_world
from takeover.types import Command, Mode, Observation

# End to end through a whole drive or the core process: `make test` runs it, test-fast not.
pytestmark = pytest.mark.slow

SEED = 21


class Hand:
    """The operator's deadman, held or not (an OperatorSource; the sticks stay centred)."""

    def __init__(self) -> None:
        self.deadman = False

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        return OperatorInput(deadman=self.deadman)


def docking_config(seed: int = SEED, auto_reset: bool = False) -> Config:
    """The docked pose measured once ([docking.reset] x_m..): the protective field's docking
    corridor is known before the first dock, as on a real base set up for the first time."""
    dock = generate_world(seed).dock
    reset = ResetConfig(x_m=dock.x_m + ROBOT_RADIUS_M * math.cos(dock.yaw_rad),
                        y_m=dock.y_m + ROBOT_RADIUS_M * math.sin(dock.yaw_rad),
                        yaw_rad=dock.yaw_rad + math.pi)
    return Config(safety=SCREEN_TEST_SAFETY,
                  docking=DockingConfig(auto_reset=auto_reset, reset=reset))


def open_session(config: Config, workspace: Path) -> tuple[OperatorSession, SimLink, Hand]:
    link = open_link(f"sim://?fast=1&reset=drive&seed={SEED}")
    assert isinstance(link, SimLink) and not link.supports_sim_control
    session = OperatorSession(config, link, ConstantPolicy(Command(0.08, 0.0)), workspace,
                              use_gamepad=False)
    hand = Hand()
    session.loop.operator = hand
    session.open()
    return session, link, hand


def step_until(session: OperatorSession, done: object, what: str,
               max_ticks: int = 2000) -> SessionSnapshot:
    """Tick the lockstep loop and poll the session (as the TUI's refresh does) until
    `done(snapshot)`; a bound in ticks, never a time."""
    for _ in range(max_ticks):
        session.loop.tick()
        snap = session.poll()
        if done(snap):  # type: ignore[operator]
            return snap
    raise AssertionError(f"no {what} within {max_ticks} ticks (mode {session.mode.value}, "
                         f"{session.loop.arbiter.reason!r})")


def dock_attempt(session: OperatorSession, link: SimLink, hand: Hand) -> SessionSnapshot:
    """Record an AUTO attempt that creeps onto the dock from just in front of it."""
    attempt = session.poll().docking.attempt + 1
    place_at_dock(link.sim)
    assert "recording" in session.begin_episode()
    session.post(OperatorEvent.AUTO)
    hand.deadman = True
    return step_until(session, lambda s: s.docking.outcome_attempt == attempt,
                      "detected outcome")


def test_a_docked_attempt_is_detected_stored_relabelled_and_n_drives_a_reset(
        workspace: Path) -> None:
    config = docking_config()
    session, link, hand = open_session(config, workspace)
    try:
        snap = dock_attempt(session, link, hand)
        d = snap.docking
        assert (d.attempt, d.successes, d.outcome, d.outcome_attempt) == (1, 1, "success", 1)
        assert d.signal in ("battery_current", "power_supply_status")
        assert d.outcome_line().startswith(f"attempt 1 · docked ({d.signal}")
        assert not snap.episode.recording
        snap = step_until(session, lambda s: s.mode is Mode.IDLE, "the robot stopped")
        assert snap.record is not None and snap.record.command.is_zero
        path = session.wait_saved()
        assert path is not None
        info = read_info(path)
        assert (info.outcome, info.detected_outcome, info.end_reason) == (
            "success", "success", d.signal)
        assert info.outcome_evidence == d.evidence and info.outcome_evidence["held_ms"] >= 500

        # The operator's relabel changes the outcome, never the detector's verdict.
        assert "relabelled failure" in session.label("failure")
        info = read_info(path)
        assert (info.outcome, info.detected_outcome) == ("failure", "success")
        assert info.outcome_evidence == d.evidence
        with h5py.File(path, "r") as f:
            assert bool(f.attrs["relabeled"])

        # "n": no teleport on this base; it drives to a start pose drawn around the dock.
        assert "reset" in session.reset_world(1)
        seen = step_until(session, lambda s: s.mode is Mode.RESET, "RESET")
        assert seen.docking.reset in ("undock", "drive", "align")
        snap = step_until(session, lambda s: s.mode is not Mode.RESET, "the reset's end")
        assert snap.mode is Mode.IDLE and snap.reason.startswith("reset done"), snap.reason
        assert (snap.docking.reset, snap.docking.reset_progress) == ("done", 1.0)
        assert snap.docking.reset_kind == "start"
        # The start region: out from the docked pose (anchored at the dock) by 1.1-2.0 m.
        frame = session.docking.planner.frame
        assert frame is not None and session.docking.planner.anchors == 1
        odom = link.latest().odom  # type: ignore[union-attr]
        r = config.docking.reset
        out = math.hypot(odom.x_m - frame.pose.x_m, odom.y_m - frame.pose.y_m)
        tol = r.position_tolerance_m + 0.05
        assert r.distance_min_m - tol <= out <= r.distance_max_m + tol, out
        # The reset never records: one episode, the attempt.
        assert [i.outcome for i in EpisodeStore(workspace).episodes()] == ["failure"]
    finally:
        session.close()


def test_auto_reset_follows_a_detected_outcome_and_stops_when_the_deadman_is_released(
        workspace: Path) -> None:
    config = docking_config(auto_reset=True)
    session, link, hand = open_session(config, workspace)
    try:
        snap = dock_attempt(session, link, hand)
        assert snap.docking.outcome == "success" and snap.docking.auto_reset
        assert "reset" in session.episode.message  # no key pressed: it started by itself
        snap = step_until(session, lambda s: s.mode is Mode.RESET
                          and s.docking.reset_progress > 0.1, "the reset under way")
        hand.deadman = False
        snap = step_until(session, lambda s: s.mode is not Mode.RESET, "the reset stopped")
        assert snap.mode is Mode.IDLE and snap.reason == "reset stopped: deadman released"
        assert snap.docking.reset == "stopped" and 0.1 < snap.docking.reset_progress < 1.0
        assert snap.record is not None and snap.record.command.is_zero
        # "n" resumes the same reset once the deadman is held again.
        hand.deadman = True
        assert "resuming" in session.reset_world(2)
        snap = step_until(session, lambda s: s.mode is not Mode.IDLE, "the reset resumed")
        assert snap.mode is Mode.RESET
        assert [i.outcome for i in EpisodeStore(workspace).episodes()] == ["success"]
    finally:
        session.close()


def test_auto_reset_pauses_after_three_failed_resets_in_a_row_until_the_operator_resets(
        workspace: Path) -> None:
    """As `takeover drive --reset drive` stops after MAX_FAILED_RESETS_IN_A_ROW, auto-reset
    gives up: the next outcome starts nothing and says why; "n" starts a reset (to where the
    last attempt's end planned, not the stale one) and clears the count."""
    config = docking_config(auto_reset=True)
    session, link, hand = open_session(config, workspace)
    try:
        for failed in range(1, MAX_FAILED_RESETS_IN_A_ROW + 1):
            snap = dock_attempt(session, link, hand)
            assert snap.docking.outcome == "success", snap.docking.evidence
            assert "reset: undocking" in session.episode.message, session.episode.message
            # Off the charger (so the next attempt docks afresh), then stopped short of its
            # target: a failed reset.
            step_until(session, lambda s: s.mode is Mode.RESET and s.docking.reset_progress > 0.1,
                       "the auto-reset under way")
            hand.deadman = False
            snap = step_until(session, lambda s: s.docking.reset == "stopped", "the reset stopped")
            assert snap.docking.failed_resets == failed
            step_until(session, lambda s: link.sim.v == 0.0 and link.sim.w == 0.0,
                       "the robot standing still")  # before it is placed at the dock again
        assert snap.docking.auto_reset_paused
        assert "3 resets in a row failed" in snap.docking.paused_line()

        snap = dock_attempt(session, link, hand)  # charging again: no reset follows
        assert snap.docking.outcome_attempt == MAX_FAILED_RESETS_IN_A_ROW + 1
        assert "auto-reset paused" in session.episode.message, session.episode.message
        for _ in range(60):
            session.loop.tick()
            snap = session.poll()
            assert snap.mode is not Mode.RESET and snap.docking.reset == "stopped"
        assert snap.docking.auto_reset_paused

        # The operator's reset starts a new one (undocking first: the robot is on the charger)
        # and clears the count; reaching the target keeps it clear.
        assert session.reset_world(7).startswith("reset: undocking"), session.episode.message
        snap = step_until(session, lambda s: s.mode is Mode.RESET, "the operator's reset")
        assert snap.docking.failed_resets == 0 and not snap.docking.auto_reset_paused
        assert snap.docking.reset == "undock"
        snap = step_until(session, lambda s: s.mode is not Mode.RESET, "the reset's end",
                          max_ticks=4000)
        assert snap.docking.reset == "done", snap.docking.reset_reason
        assert snap.docking.failed_resets == 0
        snap = dock_attempt(session, link, hand)  # auto-reset is back
        assert "reset: undocking" in session.episode.message, session.episode.message
    finally:
        session.close()


def test_an_operator_ended_attempt_stores_the_verdict_aborted(workspace: Path) -> None:
    session, _, _ = open_session(docking_config(), workspace)
    try:
        session.begin_episode()
        session.post(OperatorEvent.MANUAL)
        step_until(session, lambda s: s.docking.attempting, "the attempt")
        session.end_episode("success")  # the operator's word, before any contact
        info = read_info(session.wait_saved())  # type: ignore[arg-type]
        assert (info.outcome, info.detected_outcome) == ("success", "aborted")
        assert info.outcome_evidence["signal"] == "operator"
        assert session.poll().docking.outcome_line().startswith("attempt 1 · aborted (operator")
    finally:
        session.close()


def test_the_docking_status_and_n_cross_to_the_tui_process() -> None:
    """Through the control core's process (what `takeover run` uses), real time: the snapshot
    carries the lifecycle, and "n" asks for a driven reset, which stops at once without the
    deadman (nothing moves without it)."""
    core = RemoteSession(CoreSpec(docking_config(), f"sim://?reset=drive&seed={SEED}",
                                  use_gamepad=False))
    try:
        core.open()
        wait_until(lambda: core.poll().record is not None, "the first snapshot")
        d = core.poll().docking
        assert (d.drives_resets, d.reset, d.attempt, d.auto_reset) == (True, "idle", 0, False)
        assert core.reset_world(1).startswith("reset: undocking")
        wait_until(lambda: core.poll().docking.reset == "stopped", "the reset stopped")
        snap = core.poll()
        assert snap.mode is Mode.IDLE
        assert snap.docking.reset_reason == "reset stopped: deadman released"
    finally:
        core.close()


def wait_until(condition: object, what: str, timeout_s: float = 30.0) -> None:
    """A bound on a wait across processes, never a figure under test."""
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
