"""Several robots, one operator: a control core per robot, the operator's focus on one.

Each robot keeps what one robot has in `takeover run`: its own control core in a process of its
own (`RemoteSession`: link, loop, Arbiter, recorder, policy, gamepad), so a robot whose link or
core fails takes nothing else with it. `Fleet` is what the operator's terminal holds of them:

    fleet = Fleet([FleetRobot("a", spec_a), FleetRobot("b", spec_b)])   # on the main thread
    fleet.open_all(on_open)       # every core connects at once, each answer as it comes
    fleet.focus("b")              # the operator's gamepad and keys now move b only
    fleet.estop_all()             # space: every robot stops (each latched, acknowledged alone)
    fleet.stop("a")               # one robot stopped alone (latched e-stop, a only)
    fleet.rows()                  # one row per robot, ordered by need (the fleet screen)

Safety. Focus is the core's (core_process.py `FocusGate`): a core that is not focused reads no
operator input and ignores every gamepad button but the e-stop, so nothing the operator does
moves a robot they have not focused; only its own policy under [supervision] rules does.
`estop_all` casts to every core before it does anything else; a cast is a few bytes on a local
socket, never a request that waits for an answer, so one slow or dead core delays no other.
A lost core or link is that robot's alone: it stays in the fleet marked lost (its base stops by
its own watchdog; a lost link latches LINK_LOST in its core), and nothing restarts it.

Nothing here imports Textual; the fleet screen (tui/fleet.py) is a view over `rows()`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from takeover.control.help_queue import HelpQueue, HelpTicket
from takeover.errors import TakeoverError, UsageError
from takeover.hw.base import LinkHealth
from takeover.session.core_process import CoreSpec, RemoteSession
from takeover.session.core_url import is_core_url
from takeover.session.operator import OpenResult, SessionSnapshot
from takeover.types import HelpStatus, Mode

if TYPE_CHECKING:  # imported when a robot needs it: most fleets have no network core
    from takeover.session.core_net import NetworkSession

#: Rows' need, lowest first: asking for help, then stopped (e-stopped or lost), then the rest.
NEED_HELP, NEED_STOPPED, NEED_NONE = 0, 1, 2


@dataclass(frozen=True)
class FleetRobot:
    """One robot of the fleet: its name (in its episode files and on the screen) and its core."""

    name: str
    spec: CoreSpec


@dataclass(frozen=True)
class RobotRow:
    """One robot as the fleet screen lists it.

    help: the help monitor's status while the robot asks (None otherwise); waiting_s: how long
    it has asked, on its own loop's clock; novelty: the policy's novelty on the last tick (None
    without one); lost: why the robot cannot be driven (its core or its link is gone), or "";
    need: NEED_HELP, NEED_STOPPED or NEED_NONE (the order of the rows)."""

    name: str
    url: str
    mode: Mode
    reason: str
    attempt: int
    successes: int
    help: HelpStatus | None
    waiting_s: float | None
    novelty: float | None
    link: LinkHealth
    lost: str
    focused: bool
    opened: bool
    need: int


class Fleet:
    """The robots' sessions and the operator's focus. Create it on the main thread (each core
    is told to die with the thread that starts it: core_process.py)."""

    def __init__(self, robots: Sequence[FleetRobot], *,
                 train_command: list[str] | None = None) -> None:
        if not robots:
            raise UsageError("a fleet needs at least one robot")
        names = [r.name for r in robots]
        if len(set(names)) != len(names):
            raise UsageError(f"robot names must be unique: {', '.join(names)}")
        self.robots = list(robots)
        self.sessions: dict[str, RemoteSession | NetworkSession] = {}
        self._focused = names[0]
        self._opened: dict[str, OpenResult] = {}
        self._lock = threading.Lock()
        try:
            for robot in robots:
                # Only the first robot starts focused: no core is ever born driveable but it.
                spec = replace(robot.spec, robot_name=robot.name,
                               focused=robot.name == self._focused)
                if is_core_url(spec.robot_url):  # a core on the robot's own computer
                    from takeover.session.core_net import NetworkSession

                    network = NetworkSession(spec.config, spec.robot_url)
                    network.focus(spec.focused)
                    self.sessions[robot.name] = network
                else:
                    self.sessions[robot.name] = RemoteSession(spec, train_command=train_command)
        except BaseException:
            self.close()
            raise

    # --- who is driven ---------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.robots]

    @property
    def focused(self) -> str:
        """The robot the operator's gamepad and driving keys act on."""
        return self._focused

    @property
    def focused_session(self) -> RemoteSession | NetworkSession:
        return self.sessions[self._focused]

    def focus(self, name: str) -> None:
        """Move the operator's inputs to `name`. Every other core is told first that it is not
        focused, so that no moment has two robots listening to one pad."""
        if name not in self.sessions:
            raise UsageError(f"no robot named {name!r}; the fleet has {', '.join(self.names)}")
        for other, session in self.sessions.items():
            if other != name:
                session.focus(False)
        self.sessions[name].focus(True)
        self._focused = name

    # --- stopping ----------------------------------------------------------------------------

    def estop_all(self) -> None:
        """Latch the e-stop on every robot (space). Casts only: each core acts on it as it
        reads it, without waiting for any other; a lost core is skipped (its base has
        stopped by its own watchdog)."""
        for session in self.sessions.values():
            session.estop()

    def stop(self, name: str) -> None:
        """Latch the e-stop on `name` alone (the fleet screen's x): the others drive on."""
        if name not in self.sessions:
            raise UsageError(f"no robot named {name!r}; the fleet has {', '.join(self.names)}")
        self.sessions[name].estop()

    # --- lifecycle ---------------------------------------------------------------------------

    def open_all(self, on_open: Callable[[str, OpenResult | None, str], None] | None = None,
                 connect: bool = True) -> dict[str, OpenResult | str]:
        """Connect every robot at once (a thread each: a slow link or model load delays no
        other). `on_open(name, result, error)` is called as each answers (on its thread);
        returns each robot's result, or the one line that says why it did not open."""
        answers: dict[str, OpenResult | str] = {}

        def open_one(name: str, session: RemoteSession | NetworkSession) -> None:
            try:
                result = session.open(connect)
            except TakeoverError as err:
                answers[name] = str(err)
                if on_open is not None:
                    on_open(name, None, str(err))
                return
            with self._lock:
                self._opened[name] = result
            answers[name] = result
            if on_open is not None:
                on_open(name, result, "")

        threads = [threading.Thread(target=open_one, args=(n, s), name=f"open-{n}", daemon=True)
                   for n, s in self.sessions.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return answers

    def close(self) -> None:
        """Stop every robot, save their open episodes as aborted, end every core (in parallel:
        each may take seconds to finish a file). Idempotent."""
        threads = [threading.Thread(target=s.close, name=f"close-{n}", daemon=True)
                   for n, s in self.sessions.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    # --- telemetry ---------------------------------------------------------------------------

    def snapshots(self) -> dict[str, SessionSnapshot]:
        """Each robot's newest snapshot, in the fleet's order (a lost core: LINK_LOST)."""
        return {name: session.poll() for name, session in self.sessions.items()}

    def lost(self, name: str, snap: SessionSnapshot | None = None) -> str:
        """Why `name` cannot be driven now, or "": its core is gone, or its link is."""
        session = self.sessions[name]
        if session.lost:
            return session.lost
        with self._lock:
            opened = name in self._opened
        snap = snap if snap is not None else session.poll()
        if opened and (snap.mode is Mode.LINK_LOST or not snap.health.connected):
            return snap.reason or snap.health.detail or "link lost"
        return ""

    def rows(self, snapshots: dict[str, SessionSnapshot] | None = None) -> list[RobotRow]:
        """One row per robot, ordered by need: robots asking for help first, in C.U.R. order
        (control/help_queue.py), then stopped ones (e-stopped or lost), then the rest; within
        the last two, the fleet's own order."""
        snaps = snapshots if snapshots is not None else self.snapshots()
        queue = HelpQueue(round(self.robots[0].spec.config.supervision.help_max_wait_s * 1e9))
        rows: dict[str, RobotRow] = {}
        now_ns = time.monotonic_ns()
        for name, snap in snaps.items():
            row = self._row(name, snap)
            rows[name] = row
            if row.help is not None and row.help.reason is not None:
                # The wait, on this process's clock: every core's loop clock is its own.
                waited_ns = int((row.waiting_s or 0.0) * 1e9)
                queue.push(HelpTicket(name, row.help.reason, row.novelty, now_ns - waited_ns,
                                      row.help.reason.value))
        asking = [rows[t.robot] for t in queue.ordered(now_ns)]
        rest = [r for r in rows.values() if r.name not in queue]
        rest.sort(key=lambda r: r.need)  # stable: the fleet's order within a need
        return asking + rest

    def _row(self, name: str, snap: SessionSnapshot) -> RobotRow:
        rec = snap.record
        help_status = rec.help if rec is not None else None
        asking = help_status is not None and help_status.requested
        waiting_s = None
        if asking and rec is not None and help_status is not None and help_status.since_ns:
            waiting_s = max(0.0, (rec.t_ns - help_status.since_ns) / 1e9)
        novelty = None
        if help_status is not None and help_status.score == help_status.score:  # not NaN
            novelty = help_status.score
        lost = self.lost(name, snap)
        with self._lock:
            opened = name in self._opened
        if asking and not lost:
            need = NEED_HELP
        elif lost or snap.mode in (Mode.ESTOP, Mode.LINK_LOST):
            need = NEED_STOPPED
        else:
            need = NEED_NONE
        return RobotRow(
            name=name, url=self.sessions[name].url, mode=snap.mode, reason=snap.reason,
            attempt=snap.docking.attempt, successes=snap.docking.successes,
            help=help_status if asking and not lost else None, waiting_s=waiting_s,
            novelty=novelty, link=snap.health, lost=lost, focused=name == self._focused,
            opened=opened, need=need)
