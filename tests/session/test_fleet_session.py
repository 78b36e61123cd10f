"""The fleet (session/fleet.py) on real control cores over sim://: focus decides whose keys
reach which robot (checked in the cores, where the gate is), e-stop of all and of one, rows
ordered by need."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fleet_hooks import install_tick_log, spin_loader, tick_log
from tui_support import SCREEN_TEST_SAFETY

from takeover.config import Config, KeyboardConfig, SafetyConfig
from takeover.control.arbiter import OperatorEvent
from takeover.session.core_process import CoreSpec, RemoteSession
from takeover.session.fleet import NEED_NONE, NEED_STOPPED, Fleet, FleetRobot
from takeover.session.operator import ModelRef
from takeover.types import Mode

NAMES = ("a", "b", "c")


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def fleet_config() -> Config:
    # The policy drives unfocused robots by itself: no hold-to-run in AUTO.
    return Config(keyboard=KeyboardConfig(initial_hold_ms=1500.0, repeat_hold_ms=1000.0),
                  safety=SafetyConfig(obs_freshness_ms=SCREEN_TEST_SAFETY.obs_freshness_ms,
                                      deadman_in_auto=False))


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    config = fleet_config()
    model = ModelRef("spin", tmp_path / "unused.onnx")  # spin_loader never reads it
    robots = [FleetRobot(n, CoreSpec(config, f"sim://?seed={i + 1}", None, model,
                                     use_gamepad=False, policy_loader=spin_loader))
              for i, n in enumerate(NAMES)]
    fleet = Fleet(robots)
    try:
        answers = fleet.open_all()
        assert all(not isinstance(a, str) for a in answers.values()), answers
        for session in fleet.sessions.values():
            session.run_in_core(install_tick_log)
        yield fleet
    finally:
        fleet.close()


def log_of(session: RemoteSession) -> tuple[int | None, list[tuple[int, float, float, str]]]:
    """The core's tick log (fleet_hooks.TickLog), fetched from its process."""
    answer: tuple[int | None, list[tuple[int, float, float, str]]] = session.run_in_core(tick_log)
    return answer


def moving(rows: list[tuple[int, float, float, str]]) -> bool:
    return any(v != 0.0 or w != 0.0 for _, v, w, _ in rows)


def test_keys_move_only_the_focused_robot(fleet: Fleet) -> None:
    assert fleet.focused == "a"
    for session in fleet.sessions.values():
        session.post(OperatorEvent.MANUAL)
    wait_until(lambda: all(s.poll().mode is Mode.MANUAL for s in fleet.sessions.values()),
               "MANUAL everywhere")

    def drive(name: str) -> None:
        # Keys sent to every core, as a terminal bug might: only the focused one may act.
        wait_until(lambda: [s.press_key("up") for s in fleet.sessions.values()] and moving(
            log_of(fleet.sessions[name])[1][-3:]), f"{name} moving")

    drive("a")
    assert not moving(log_of(fleet.sessions["b"])[1])
    assert not moving(log_of(fleet.sessions["c"])[1])
    fleet.focus("b")
    before = {n: len(log_of(s)[1]) for n, s in fleet.sessions.items()}
    drive("b")
    session_a = fleet.sessions["a"]
    wait_until(lambda: len(log_of(session_a)[1]) > before["a"] + 5, "a's ticks")
    # a let go at once when it lost focus (its held key released), c never moved.
    a_rows = log_of(fleet.sessions["a"])[1][before["a"] + 2:]
    assert a_rows and not moving(a_rows)
    assert not moving(log_of(fleet.sessions["c"])[1])


def test_estop_all_stops_every_robot_by_the_next_tick(fleet: Fleet) -> None:
    for session in fleet.sessions.values():
        session.post(OperatorEvent.AUTO)  # each turns in place under its own policy
    wait_until(lambda: all(moving(log_of(s)[1][-2:]) for s in fleet.sessions.values()),
               "every robot driving by its policy")
    fleet.estop_all()
    wait_until(lambda: all(s.poll().mode is Mode.ESTOP for s in fleet.sessions.values()),
               "E-STOP everywhere")
    for name, session in fleet.sessions.items():
        wait_until(lambda s=session: (log := log_of(s))[0] is not None
                   and log[1][-1][0] >= log[0] + 3, f"{name}'s ticks after the e-stop")
        at, rows = log_of(session)
        assert at is not None
        before = [r for r in rows if r[0] <= at]
        after = [r for r in rows if r[0] >= at + 2]  # at + 1 may have read its input before
        assert moving(before[-1:]), f"{name} was not moving when the e-stop came"
        assert after and not moving(after), f"{name} sent motion after the e-stop: {after[:3]}"
        assert all(m == "ESTOP" for *_, m in after)
    rows = fleet.rows()
    assert [r.need for r in rows] == [NEED_STOPPED] * 3


def test_one_robot_is_stopped_alone(fleet: Fleet) -> None:
    for session in fleet.sessions.values():
        session.post(OperatorEvent.AUTO)
    wait_until(lambda: all(moving(log_of(s)[1][-2:]) for s in fleet.sessions.values()),
               "every robot driving")
    fleet.stop("b")
    wait_until(lambda: fleet.sessions["b"].poll().mode is Mode.ESTOP, "b stopped")
    for name in ("a", "c"):
        session = fleet.sessions[name]
        n = len(log_of(session)[1])
        wait_until(lambda s=session, n=n: len(log_of(s)[1]) > n + 5, f"{name}'s ticks")
        assert session.poll().mode is Mode.AUTO and moving(log_of(session)[1][-3:])
    rows = fleet.rows()
    assert [r.name for r in rows] == ["b", "a", "c"]  # the stopped one first: it needs you
    assert [r.need for r in rows] == [NEED_STOPPED, NEED_NONE, NEED_NONE]
    with pytest.raises(Exception, match="no robot named"):
        fleet.stop("zz")


# --- the fleet's configuration: [[robots]] and --robot ----------------------------------------


def test_robots_entries_merge_their_overrides_over_the_workspace() -> None:
    from takeover.config import config_from_dict

    config = config_from_dict({
        "safety": {"deadman_in_auto": True, "auto": {"max_v_mps": 0.3}},
        "robots": [{"name": "bay1", "url": "sim://?seed=1"},
                   {"name": "bay2", "url": "sim://?seed=2", "safety": {"deadman_in_auto": False},
                    "supervision": {"mode": "robot"}}]})
    one, two = config.robots
    assert (one.name, one.url, one.config.robot.url) == ("bay1", "sim://?seed=1", "sim://?seed=1")
    assert one.config.safety.deadman_in_auto and one.config.supervision.mode == "human"
    assert not two.config.safety.deadman_in_auto and two.config.supervision.mode == "robot"
    assert two.config.safety.auto.max_v_mps == 0.3  # the workspace's, not the default 0.4
    assert two.config.robots == () and config.safety.deadman_in_auto


@pytest.mark.parametrize(("robots", "says"), [
    ([{"name": "Bay1", "url": "sim://"}], "robots[0] (Bay1).name = 'Bay1': 1 to 32 of a-z"),
    ([{"name": "a", "url": "sim://"}, {"name": "a", "url": "sim://"}], "names must be unique"),
    ([{"name": "a", "url": "sim://", "safety": {"deadman_in_aut": False}}],
     "unknown key 'robots.safety.deadman_in_aut'"),
    ([{"name": "a", "url": "sim://", "loop": {"rate_hz": 10}}], "unknown key 'robots.loop'"),
    ([{"name": "a"}], "robots[0] (a).url: a robot URL is required"),
    ([{"name": "a", "url": "sim://", "supervision": {"mode": "x"}}],
     "robots.supervision.mode = 'x'"),
    ({"name": "a"}, "expected [[robots]] tables"),
])
def test_a_bad_robots_entry_is_one_line_naming_it(robots: object, says: str) -> None:
    from takeover.config import config_from_dict
    from takeover.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        config_from_dict({"robots": robots}, "takeover.toml")
    assert says in str(err.value) and "\n" not in str(err.value)


def test_run_robot_flags_name_the_robots() -> None:
    from takeover.cli.run import robots_to_run
    from takeover.config import config_from_dict
    from takeover.errors import UsageError

    plain = Config()
    assert [(r.name, r.url) for r in robots_to_run(plain, None)] == [("", "sim://")]
    # One --robot: today's single robot, unnamed; a URL's own "=" is not a name.
    assert [(r.name, r.url) for r in robots_to_run(plain, ["serial:///dev/x?baud=9600"])] == [
        ("", "serial:///dev/x?baud=9600")]
    got = robots_to_run(plain, ["sim://?seed=1", "sim://?seed=2"])
    assert [(r.name, r.url) for r in got] == [("robot1", "sim://?seed=1"),
                                            ("robot2", "sim://?seed=2")]
    configured = config_from_dict({"robots": [
        {"name": "bay2", "url": "sim://", "safety": {"deadman_in_auto": False}}]})
    got = robots_to_run(configured, ["bay2=sim://?seed=5", "other=sim://?seed=6"])
    assert [(r.name, r.url) for r in got] == [("bay2", "sim://?seed=5"), ("other", "sim://?seed=6")]
    assert not got[0].config.safety.deadman_in_auto and got[1].config.safety.deadman_in_auto
    assert [r.name for r in robots_to_run(configured, None)] == ["bay2"]
    with pytest.raises(UsageError, match="given twice"):
        robots_to_run(plain, ["a=sim://", "a=sim://?seed=2"])
