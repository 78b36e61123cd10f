"""Perturbation families (sim/perturb.py): each one changes what the robot senses or does at a
severity above 0 and nothing at 0; draws are fixed by the seed; specs are checked in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest

from takeover.errors import UsageError
from takeover.hw.base import LinkOptions, open_link
from takeover.sim.link import SimLink
from takeover.sim.perturb import APPEARANCE_FAMILIES, FAMILIES, parse_perturb, resolve
from takeover.sim.render import CameraModel
from takeover.sim.simulator import SimConfig, Simulator
from takeover.types import Command

SEED = 5003
CAMERA = CameraModel(48, 48)
# A short drive that turns and moves, so that actuation families show in the pose.
COMMANDS = [Command(0.3, 0.4)] * 12


def drive(perturb: str, seed: int = SEED) -> tuple[Simulator, list[object]]:
    """The simulator after COMMANDS, and what it sensed along the way (images, scans, poses)."""
    sim = Simulator(seed, SimConfig(camera=CAMERA, perturb=perturb))
    seen: list[object] = [(sim.x, sim.y, sim.yaw)]
    for cmd in COMMANDS:
        obs = sim.observe()
        seen += [obs.image, obs.scan_m]
        sim.command(cmd)
        sim.step(0.05)
        seen.append((sim.x, sim.y, sim.yaw))
    return sim, seen


def same(a: list[object], b: list[object]) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True) for x, y in zip(a, b,
                                                                                    strict=True))


NOMINAL = drive("")[1]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_changes_the_robot_above_zero_and_nothing_at_zero(family: str) -> None:
    assert same(drive(f"{family}=0")[1], NOMINAL)
    assert not same(drive(f"{family}=1")[1], NOMINAL)
    assert not same(drive(f"{family}=0.3")[1], drive(f"{family}=1")[1])  # severity scales
    assert same(drive(f"{family}=1")[1], drive(f"{family}=1")[1])  # the seed fixes the draws


def test_families_act_where_they_say() -> None:
    nominal, _ = drive("")
    sim, _ = drive("lidar_range=1")
    scan = sim.observe().scan_m
    assert scan is not None and np.nanmax(scan) <= 1.5 and np.isnan(scan).any()
    sim, _ = drive("lidar_dropout=1")
    scan = sim.observe().scan_m
    assert scan is not None and 0.35 < np.isnan(scan).mean() < 0.65
    assert drive("actuation_delay=1")[0].delay_s == pytest.approx(nominal.delay_s + 0.15)
    # Camera families leave the body alone; actuation families leave the first frame alone.
    for family in ("lighting", "camera_jpeg", "dock_occlusion", "textures"):
        assert (drive(f"{family}=1")[0].x, drive(f"{family}=1")[0].y) == (nominal.x, nominal.y)
    for family in ("wheel_slip", "actuation_scale", "actuation_delay"):
        first = Simulator(SEED, SimConfig(camera=CAMERA, perturb=f"{family}=1")).observe()
        assert np.array_equal(first.image, Simulator(SEED, SimConfig(camera=CAMERA)).observe().image)


def test_far_start_is_farther_and_clear() -> None:
    far, near = [], []
    for seed in range(20):
        for spec, out in (("start_pose=1", far), ("", near)):
            sim = Simulator(seed, SimConfig(camera=CAMERA, perturb=spec))
            out.append(math.hypot(sim.x - sim.dock_pose.x_m, sim.y - sim.dock_pose.y_m))
            assert sim.clearance_m() > 0.2
    assert np.mean(far) > np.mean(near) + 0.6


def test_domain_randomisation_draws_per_seed() -> None:
    spec = parse_perturb("random=0.8")
    draws = [resolve(spec, seed) for seed in range(10)]
    assert draws == [resolve(spec, seed) for seed in range(10)]
    assert len({tuple(sorted(d)) for d in draws}) > 5
    assert all(0 < s <= 0.8 and f in FAMILIES for d in draws for f, s in d.items())
    appearance = [resolve(parse_perturb("random_appearance=1"), seed) for seed in range(20)]
    assert set().union(*appearance) == set(APPEARANCE_FAMILIES)


@pytest.mark.parametrize("text, words", [
    ("lightning=0.5", "unknown family 'lightning'"),
    ("lighting=2", r"between 0 \(off\) and 1"),
    ("lighting=bright", "is not a number"),
    ("lighting", "expected FAMILY=SEVERITY"),
    ("lighting=0.5,lighting=1", "given twice"),
])
def test_bad_specs_are_one_line(text: str, words: str) -> None:
    with pytest.raises(UsageError, match=words) as e:
        parse_perturb(text)
    assert "\n" not in str(e.value)


def test_the_robot_url_reaches_the_families() -> None:
    link = open_link("sim://?fast=1&width=48&height=48&perturb=lidar_range:1,lighting=0.5",
                     LinkOptions(fast=True))
    assert isinstance(link, SimLink)
    assert link.sim.config.perturb == "lidar_range=1,lighting=0.5"
    link.connect()
    obs = link.latest()
    assert obs is not None and obs.scan_m is not None and np.nanmax(obs.scan_m) <= 1.5
    with pytest.raises(UsageError, match="unknown family"):
        open_link("sim://?fast=1&perturb=fog=1", LinkOptions(fast=True))
