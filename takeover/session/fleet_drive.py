"""`takeover drive --robots N`: N simulated robots and ONE simulated operator, headless.

Each robot is what `takeover drive --fast` runs for one (session/drive.py): its own lockstep
simulator (sim://), control loop and Arbiter (session/stack.py), its own ONNX policy, its own
EpisodeRunner (control/episodes.py) and help tally (session/help_tally.py). Robot `robotK`
runs its own share of the episodes: E episodes over N robots, in contiguous blocks of seeds
(robot1 the first E/N seeds from `--seed`, robot2 the next, ...), so that the pooled episodes
are the same seeds whatever N is.

Time is simulated time. One clock (`FleetClock`) hands the turn round: on each fleet tick
every robot still running takes exactly one control tick, one after another, in name order.
Each robot's episodes run in a thread of their own (the EpisodeRunner is written as a loop),
but only the thread holding the turn runs: the threads are coroutines, so the run is
deterministic and the robots' worlds advance in step. The operator's clock is the fleet's:
`on_duty_s` is the run's length in fleet ticks.

The operator (`--driver operator-sim`) is the simulated operator of inputs/operator_sim.py, one
per robot for its knowledge of that robot's dock, behind one `FleetOperator` that lets it
attend to one robot at a time:

- robot-gated (`[supervision] mode = robot`): a robot that asks for help holds still (the
  Arbiter brakes it to a stop and holds) and its request goes into the HelpQueue
  (control/help_queue.py, Fleet-DAgger's C.U.R. order). The operator takes the first request,
  turns to that robot (its reaction time, `[supervision] operator_reaction_s`, starts then, not
  when the robot asked), corrects or hands back as it does for one robot, and when that robot
  drives on by itself takes the next request. The other robots run their policy on their own.
- human-gated (`human`): the policy drives only while watched (hold-to-run,
  `[safety] deadman_in_auto`), and one person can watch one robot. The operator watches one
  robot's whole attempt, taking over when it strays; the other robots wait, stopped, for their
  turn, and are not ticked while they wait (a stopped robot's world does not change). This is
  the honest human-gated baseline for a fleet: its success per operator minute cannot grow
  with N, whatever N is.
`both` is refused with more than one robot: one operator cannot watch every robot.

With `--driver policy` no operator is modelled: each robot's deadman is held and its policy
drives unsupervised, as `drive --driver policy` does for one (a request is never answered).

Idle time: a robot's tick spent asking for help (queued, or in the operator's reaction time),
or a fleet tick spent waiting for the operator's watch (human-gated). Attention: the seconds
the operator looked (inputs/operator_sim.py counts them; only the attended robot's counts).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from takeover.config import Config
from takeover.control.arbiter import OperatorEvent, OperatorInput
from takeover.control.episodes import OUTCOME_SUCCESS, EpisodeResult, EpisodeRunner
from takeover.control.help_queue import HelpQueue, HelpTicket
from takeover.control.loop import ControlLoop, LoopTiming, PolicyDriver
from takeover.errors import UsageError
from takeover.hw.base import LinkOptions, RobotLink, open_link
from takeover.inputs.operator_sim import SimulatedOperator
from takeover.inputs.scripted import DeadmanHolder
from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.writer import EpisodeWriter
from takeover.session.drive import (
    DriveRequest,
    demonstration_noise,
    drive_config,
    load_drive_policy,
    start_drive_writer,
)
from takeover.session.drive_resets import save_episode
from takeover.session.help_tally import EpisodeHelp, HelpCounter, HelpTally, help_totals
from takeover.session.stack import build_control_loop, simulated_operator
from takeover.types import CommandSource, Mode, Observation, StepRecord
from takeover.workspace.layout import round_for_model

if TYPE_CHECKING:
    from takeover.policy.runtime import ChunkPolicy

#: The drivers a fleet runs: the simulated operator, or the policies alone.
FLEET_DRIVERS = ("operator-sim", "policy")
#: The supervision modes one operator can give several robots.
FLEET_SUPERVISION = ("human", "robot")
MAX_ROBOTS = 64


def robot_names(n: int) -> list[str]:
    return [f"robot{i + 1}" for i in range(n)]


def seed_shares(first_seed: int, episodes: int, robots: int) -> list[list[int]]:
    """Each robot's seeds: contiguous blocks, the first `episodes % robots` one longer."""
    base, extra = divmod(episodes, robots)
    out, seed = [], first_seed
    for i in range(robots):
        n = base + (1 if i < extra else 0)
        out.append(list(range(seed, seed + n)))
        seed += n
    return out


@dataclass(frozen=True)
class TickTrace:
    """One robot's tick as the fleet saw it (`run_fleet_drive(trace=...)`): for tests and
    plots. attended: the operator's attention was on this robot; looked: the operator's
    attention clock ran for this robot on this tick; queued: it asked and waited its turn."""

    fleet_tick: int
    robot: str
    mode: Mode
    source: CommandSource
    v_mps: float
    w_radps: float
    requested: bool
    attended: bool
    looked: bool
    queued: bool


@dataclass(eq=False)
class _Robot:
    name: str
    link: RobotLink
    loop: ControlLoop
    policy: PolicyDriver
    seeds: list[int]
    named: bool  # in the episode files' names: one robot alone records unnamed, as today
    operator: SimulatedOperator | None = None
    runner: EpisodeRunner | None = None
    tally: HelpTally | None = None
    writer: EpisodeWriter | None = None
    results: list[EpisodeResult] = field(default_factory=list)
    helped: list[EpisodeHelp] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)
    go: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    turn_used: bool = False
    finished: bool = False
    error: BaseException | None = None
    in_episode: bool = False  # between prepare() and the end of EpisodeRunner.run
    waiting_watch: bool = False  # human-gated: at an attempt's start, waiting to be watched
    asking: bool = False  # its last record asked for help
    turns: int = 0  # fleet ticks it took part in (ticked or waited): its robot time
    idle_turns: int = 0


class _Seat:
    """A robot's operator source: the simulated operator's hands, when they are on this robot.
    A robot that asks while the operator attends another gets the deadman held and nothing
    else (the Arbiter keeps it still); its operator does not start reacting until attended."""

    def __init__(self, fleet: FleetOperator, robot: _Robot) -> None:
        self.fleet, self.robot = fleet, robot

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        sim = self.robot.operator
        assert sim is not None
        if self.robot.asking and self.fleet.current is not self.robot:
            return OperatorInput(deadman=True)
        return sim.read(obs, now_ns)


class FleetOperator:
    """One operator's attention over the fleet: which robot it attends (`current`), the
    queue of requests (robot-gated) or the robots waiting to be watched (human-gated)."""

    def __init__(self, supervision: str, max_wait_ns: int | None = None) -> None:
        self.supervision = supervision
        self.queue = HelpQueue(max_wait_ns)
        self.current: _Robot | None = None
        self.robots: list[_Robot] = []
        self._last_watched = -1
        # A robot's thread failed: every robot is e-stopped and none starts another attempt.
        self.stopping = False

    def assign(self, now_ns: int) -> None:
        """Turn to the next robot if the operator is free."""
        if self.current is not None:
            return
        if self.supervision == "robot":
            by_name = {r.name: r for r in self.robots}
            while (ticket := self.queue.pop_next(now_ns)) is not None:
                robot = by_name[ticket.robot]
                if robot.asking and robot.in_episode:
                    self.current = robot
                    return
            return
        # Human-gated: the next robot waiting at its attempt's start, in turn.
        n = len(self.robots)
        for k in range(1, n + 1):
            i = (self._last_watched + k) % n
            if self.robots[i].waiting_watch:
                self._last_watched = i
                self.current = self.robots[i]
                return

    def release(self, robot: _Robot, now_ns: int) -> None:
        self.queue.remove(robot.name)
        if self.current is robot:
            self.current = None
            self.assign(now_ns)

    def after_tick(self, robot: _Robot, rec: StepRecord, now_ns: int) -> None:
        """Robot-gated: queue a new request, close one withdrawn, and let the operator go
        once the attended robot drives on by itself."""
        if self.supervision != "robot":
            return
        sim = robot.operator
        assert sim is not None
        if self.current is robot:
            if not robot.asking and not sim.driving and rec.mode is not Mode.TAKEOVER:
                self.release(robot, now_ns)
        elif robot.asking and rec.help is not None and rec.help.reason is not None:
            score = rec.help.score
            self.queue.push(HelpTicket(robot.name, rec.help.reason,
                                       None if math.isnan(score) else score, now_ns,
                                       rec.reason))
            self.assign(now_ns)
        else:
            self.queue.remove(robot.name)


class FleetClock:
    """Hands one turn round the robots' threads: exactly one thread (the coordinator's or a
    robot's) runs at any moment, so the fleet is deterministic and lockstep."""

    def __init__(self, period_ns: int) -> None:
        self.period_ns = period_ns
        self.ticks = 0
        self._back = threading.Semaphore(0)

    @property
    def now_ns(self) -> int:
        return self.ticks * self.period_ns

    def next_turn(self, robot: _Robot) -> None:
        """From a robot's thread: hand back a used turn and wait for its next one."""
        if robot.turn_used:
            self._back.release()
            robot.go.acquire()
            robot.turn_used = False
        robot.turn_used = True
        robot.turns += 1

    def give_turn(self, robot: _Robot) -> None:
        """From the coordinator: let `robot` take its turn, and wait until it hands it back."""
        robot.go.release()
        self._back.acquire()

    def finished(self) -> None:
        """From a robot's thread, at its end: the turn comes back for good."""
        self._back.release()


@dataclass(frozen=True)
class FleetRun:
    """run_fleet_drive's options beyond the DriveRequest."""

    robots: int = 1
    # Test hook: a PolicyDriver per robot instead of the ONNX model (the link is the robot's).
    policy_factory: Callable[[RobotLink], PolicyDriver] | None = None


def check_fleet_request(request: DriveRequest, robots: int, config: Config) -> None:
    if not 1 <= robots <= MAX_ROBOTS:
        raise UsageError(f"--robots {robots}: must be between 1 and {MAX_ROBOTS}")
    if request.driver not in FLEET_DRIVERS:
        raise UsageError(f"--robots with --driver {request.driver}: use "
                         f"{' or '.join(FLEET_DRIVERS)}")
    url = request.robot_url or config.robot.url
    if not url.startswith("sim://"):
        raise UsageError(f"--robots runs simulated robots (sim://), not {url}")
    if request.reset != "teleport" or request.truth_log is not None:
        raise UsageError("--robots resets each simulator per seed: leave out --reset drive "
                         "and --truth-log")
    if request.episodes < robots:
        raise UsageError(f"--episodes {request.episodes} for --robots {robots}: give each "
                         "robot at least one episode")
    if config.supervision.mode not in FLEET_SUPERVISION and request.driver == "operator-sim":
        raise UsageError(f"--supervision {config.supervision.mode} with --robots: one operator "
                         "cannot watch every robot and answer them too; use human or robot")
    if request.record and request.workspace is None:
        raise UsageError("--record needs --workspace DIR (episodes go to DIR/rounds/rNNN/)")


def run_fleet_drive(request: DriveRequest, run: FleetRun, progress: TextIO | None = None,
                    count_help: HelpCounter | None = None,
                    trace: list[TickTrace] | None = None) -> dict[str, Any]:
    """Run the fleet; the `drive --json` summary (pooled over the robots) with `robots`,
    `per_robot` and `operator`. trace: a list to append every robot's every tick to."""
    config = drive_config(request)
    check_fleet_request(request, run.robots, config)
    rate_hz = request.rate_hz or config.loop.rate_hz
    if not 1.0 <= rate_hz <= 50.0:
        raise UsageError(f"--rate-hz {rate_hz}: must be between 1 and 50")
    url = request.robot_url or config.robot.url
    names = robot_names(run.robots)
    shares = seed_shares(request.seed, request.episodes, run.robots)
    demo = demonstration_noise(request, config)
    supervision = config.supervision.mode
    fleet = FleetOperator(supervision, round(config.supervision.help_max_wait_s * 1e9))
    clock = FleetClock(round(1e9 / rate_hz))
    robots: list[_Robot] = []
    model_id = ""
    chunks: list[ChunkPolicy] = []
    policy_info: dict[str, Any] | None = None
    t0 = time.perf_counter()
    try:
        for name, seeds in zip(names, shares, strict=True):
            link = open_link(url, LinkOptions(
                fast=True, seed=seeds[0], camera_width=config.robot.camera_width,
                camera_height=config.robot.camera_height))
            link.connect()
            policy: PolicyDriver
            if run.policy_factory is not None:
                policy = run.policy_factory(link)
            else:
                chunk: ChunkPolicy = load_drive_policy(request, config)
                model_id = chunk.runtime.model_id
                chunks.append(chunk)
                policy = chunk
            loop = build_control_loop(config, link, DeadmanHolder(), policy, rate_hz=rate_hz,
                                      demonstration=demo)
            robot = _Robot(name, link, loop, policy, seeds, named=run.robots > 1)
            if request.driver == "operator-sim":
                robot.operator = simulated_operator(link.dock_pose(), loop, rate_hz,
                                                    config.supervision)
                loop.operator = _Seat(fleet, robot)
            if count_help is not None:
                robot.tally = HelpTally(count_help, rate_hz, robot.operator)
            # One writer per robot, each under its own robot's name (recorder/layout.py:
            # episode numbers unique across them, one lock per robot); one robot: unnamed.
            robot.writer = start_drive_writer(request, rate_hz, True, progress,
                                              robot_name=name if run.robots > 1 else "",
                                              label=name)
            if robot.writer is not None:
                loop.sinks.append(robot.writer)
            robots.append(robot)
        fleet.robots = robots
        _run(robots, fleet, clock, request, config, rate_hz, model_id, progress, trace)
    finally:
        for robot in robots:
            robot.loop.stop()
            if robot.writer is not None:
                robot.writer.stop()
            robot.link.close()
    wall_s = time.perf_counter() - t0
    for robot in robots:
        if robot.error is not None:
            raise robot.error
    if chunks:
        policy_info = _policy_json(chunks, model_id)
    return _summary(robots, clock, request, config, rate_hz, url, wall_s, policy_info,
                    count_help is not None)


def _run(robots: list[_Robot], fleet: FleetOperator, clock: FleetClock, request: DriveRequest,
         config: Config, rate_hz: float, model_id: str, progress: TextIO | None,
         trace: list[TickTrace] | None) -> None:
    """The coordinator: one fleet tick after another until every robot has run its share."""
    watching = request.driver == "operator-sim" and fleet.supervision == "human"
    engage = OperatorEvent.AUTO
    operator_name = "operator-sim" if request.driver == "operator-sim" else "deadman-holder"
    recorded_config = dataclasses.asdict(dataclasses.replace(
        config, demonstration=demonstration_noise(request, config)))
    total = sum(len(r.seeds) for r in robots)
    done_count = [0]

    def note(text: str) -> None:
        if progress is not None:
            print(text, file=progress, flush=True)

    def make_tick(robot: _Robot) -> Callable[[], StepRecord]:
        def tick() -> StepRecord:
            clock.next_turn(robot)
            sim = robot.operator
            looked_before = sim.attention_s if sim is not None else 0.0
            attended = fleet.current is robot
            rec = robot.loop.tick()
            robot.asking = rec.help is not None and rec.help.requested
            if robot.asking:
                robot.idle_turns += 1
            if sim is not None:
                fleet.after_tick(robot, rec, clock.now_ns)
            if trace is not None:
                trace.append(TickTrace(
                    clock.ticks, robot.name, rec.mode, rec.source, rec.command.v_mps,
                    rec.command.w_radps, robot.asking, attended,
                    sim is not None and sim.attention_s > looked_before,
                    robot.asking and not attended))
            return rec
        return tick

    def robot_main(robot: _Robot) -> None:
        link, loop = robot.link, robot.loop
        robot.go.acquire()  # the first turn
        try:
            robot.runner = EpisodeRunner(
                loop, max_steps=request.max_steps, on_event=lambda t: note(f"{robot.name}: {t}"),
                on_record=None if robot.tally is None else robot.tally.on_record,
                docking=config.docking, tick=make_tick(robot))
            for k, seed in enumerate(robot.seeds):
                if watching:
                    robot.waiting_watch = True
                    fleet.assign(clock.now_ns)
                    while fleet.current is not robot and not fleet.stopping:
                        clock.next_turn(robot)  # a turn spent waiting, the robot stopped
                        robot.idle_turns += 1
                    robot.waiting_watch = False
                if fleet.stopping:
                    break  # another robot failed: no new attempt starts

                def prepare(seed: int = seed) -> None:
                    robot.in_episode = True
                    if robot.operator is not None:
                        robot.operator.reset(link.dock_pose())
                    if loop.perturbation is not None:
                        loop.perturbation.reseed(seed)
                    if robot.tally is not None:
                        robot.tally.start()
                    if robot.writer is not None:
                        robot.writer.begin_episode(_meta(robot, seed, model_id, rate_hz,
                                                         operator_name, recorded_config))

                result = robot.runner.run(seed, engage, prepare=prepare)
                robot.in_episode = False
                robot.asking = False
                if robot.operator is not None:
                    fleet.release(robot, clock.now_ns)
                robot.results.append(result)
                if robot.tally is not None:
                    robot.helped.append(robot.tally.finish(result.outcome))
                path_note = ""
                if robot.writer is not None:
                    path = save_episode(robot.writer, result)
                    if path is not None:
                        robot.saved.append(str(path))
                        path_note = f" -> {path}"
                done_count[0] += 1
                ok = sum(r.outcome == OUTCOME_SUCCESS for rb in robots for r in rb.results)
                note(f"{robot.name} episode {k + 1}/{len(robot.seeds)} seed {seed}: "
                     f"{result.outcome} ({result.detail}) in {result.steps} steps at "
                     f"{clock.ticks / rate_hz:.0f} s; {ok}/{done_count[0]} of {total} docked"
                     f"{path_note}")
        except BaseException as e:  # handed to the caller's thread, which raises it
            robot.error = e
        finally:
            robot.finished = True
            robot.in_episode = robot.asking = robot.waiting_watch = False
            if robot.operator is not None:
                fleet.release(robot, clock.now_ns)
            clock.finished()

    threads = [threading.Thread(target=robot_main, args=(r,), name=f"fleet-{r.name}",
                                daemon=True) for r in robots]
    for t in threads:
        t.start()
    while True:
        running = [r for r in robots if not r.finished]
        if not running:
            break
        fleet.assign(clock.now_ns)
        for robot in running:
            if not robot.finished:
                clock.give_turn(robot)
        if any(r.error is not None for r in robots):
            _stop_all(robots, fleet, clock)
            break
        clock.ticks += 1
    for t in threads:
        t.join(timeout=5.0)


def _stop_all(robots: list[_Robot], fleet: FleetOperator, clock: FleetClock) -> None:
    """A robot's thread failed: e-stop every robot (latched: its attempt ends as aborted and
    nothing restarts it) and let each thread run to its end."""
    fleet.stopping = True
    for robot in robots:
        robot.loop.post(OperatorEvent.ESTOP)
    for robot in robots:
        while not robot.finished:
            clock.give_turn(robot)


def _meta(robot: _Robot, seed: int, model_id: str, rate_hz: float, operator: str,
          config: dict[str, Any]) -> EpisodeMeta:
    return EpisodeMeta(round=round_for_model(model_id), rate_hz=rate_hz, model_id=model_id,
                       operator=operator, robot_url=robot.link.url, config=config,
                       extra={"seed": seed, "fleet_robot": robot.name}, origin="takeover drive",
                       robot_name=robot.name if robot.named else "")


def _policy_json(policies: list[ChunkPolicy], model_id: str) -> dict[str, Any]:
    """The `policy` object of `drive --json`, pooled: the first robot's latency figures (the
    robots run the same model on the same CPU), inference counts summed."""
    first = policies[0]
    return {"model": str(first.runtime.path), "model_id": model_id,
            "inferences": sum(p.inferences for p in policies),
            "slow_inferences": sum(p.slow_inferences for p in policies),
            **first.latency_summary()}


def _r3(x: float) -> float:
    return round(x, 3)


def _summary(robots: list[_Robot], clock: FleetClock, request: DriveRequest, config: Config,
             rate_hz: float, url: str, wall_s: float, policy: dict[str, Any] | None,
             counted: bool) -> dict[str, Any]:
    dt_s = 1.0 / rate_hz
    rows = []
    per_episode: list[dict[str, Any]] = []
    for robot in robots:
        ok = sum(r.outcome == OUTCOME_SUCCESS for r in robot.results)
        n = len(robot.results)
        rows.append({"robot": robot.name, "episodes": n, "successes": ok,
                     "success_rate": round(ok / n, 4) if n else None,
                     "help_requests": sum(h.requests for h in robot.helped) if counted else None,
                     "idle_s": _r3(robot.idle_turns * dt_s),
                     "time_s": _r3(robot.turns * dt_s)})
        for i, r in enumerate(robot.results):
            per_episode.append({**r.as_json(), "robot": robot.name,
                                **(robot.helped[i].as_json() if counted else {}),
                                "outcome_truth": r.outcome})
    per_episode.sort(key=lambda e: int(e["seed"]))
    episodes = sum(len(r.results) for r in robots)
    successes = sum(r.outcome == OUTCOME_SUCCESS for rb in robots for r in rb.results)
    helped = [h for r in robots for h in r.helped]
    totals = help_totals(helped) if counted else {}
    ticks = sum(r.loop.stats.ticks for r in robots)
    timing = LoopTiming(rate_hz=ticks / wall_s if wall_s > 0 else 0.0, period_ms_p50=None,
                        late_ms_p50=None, late_ms_p99=None, late_ms_max=None,
                        overruns=sum(r.loop.stats.overruns for r in robots), ticks=ticks,
                        scheduling="lockstep")
    on_duty_s = clock.ticks * dt_s
    modelled = request.driver == "operator-sim"
    attention = totals.get("attention_s") if modelled else None
    driving = totals.get("driving_s") if modelled else None
    robot_time = sum(r.turns for r in robots)
    return {
        "episodes": episodes,
        "successes": successes,
        "success_rate": successes / episodes if episodes else None,
        "robot": url,
        "driver": request.driver,
        "fast": True,
        "loop": timing.as_json(),
        **({} if policy is None else {"policy": policy}),
        "supervision": config.supervision.mode,
        **totals,
        "per_episode": per_episode,
        "recorded": [p for r in robots for p in r.saved],
        "robots": len(robots),
        "per_robot": rows,
        "operator": {"on_duty_s": _r3(on_duty_s) if modelled else None,
                     "attention_s": attention, "driving_s": driving},
        "idle_frac": round(sum(r.idle_turns for r in robots) / robot_time, 4)
        if robot_time else None,
        "wall_s": round(wall_s, 2),
    }
