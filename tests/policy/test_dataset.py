"""Samples and loss masks from the episode store; weighting; splits; augmentation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from policy_support import TINY_CHUNK, make_workspace, write_episode

from takeover.errors import UsageError
from takeover.policy.dataset import (
    AugmentConfig,
    augment_images,
    episode_split,
    gaussian_blur,
    hindsight_dock_pose,
    load_dataset,
    sample_weights,
)
from takeover.types import ACTION_MODE_DEMONSTRATION as DEMO
from takeover.types import ACTION_MODE_INTERVENTION as HUMAN
from takeover.types import ACTION_MODE_ROBOT as ROBOT


@pytest.fixture
def mixed_workspace(tmp_path: Path) -> Path:
    ws = make_workspace(tmp_path / "ws")
    # IDLE, 6 demonstration steps, then a DAgger-like run: robot, intervention, robot.
    write_episode(ws, [None, DEMO, DEMO, DEMO, DEMO, DEMO, DEMO])
    write_episode(ws, [None, ROBOT, ROBOT, ROBOT, HUMAN, HUMAN, ROBOT, ROBOT], round_index=1)
    return ws


def test_only_human_steps_are_supervised_and_chunks_stop_at_the_end(mixed_workspace: Path) -> None:
    ds = load_dataset(mixed_workspace, chunk_size=TINY_CHUNK)
    assert ds.episodes == ["r000/ep_0001", "r001/ep_0001"]
    assert sorted(set(ds.rounds)) == [0, 1]  # every round is aggregated
    for i in range(len(ds)):
        ep, step = int(ds.episode[i]), int(ds.step[i])
        for k in range(TINY_CHUNK):
            t = step + k
            label_step = round(float(ds.actions[i, k, 0]) * 100)  # the command encodes its step
            modes = ([None, DEMO, DEMO, DEMO, DEMO, DEMO, DEMO] if ep == 0
                     else [None, ROBOT, ROBOT, ROBOT, HUMAN, HUMAN, ROBOT, ROBOT])
            supervised = t < len(modes) and modes[t] in (DEMO, HUMAN)
            assert bool(ds.mask[i, k]) == supervised, (ep, step, k)
            if supervised:
                assert label_step == t
    # The IDLE step has no supervised step in reach for episode 1? It has: steps 1..4 are DEMO.
    # Robot steps whose whole chunk is robot-driven are not samples at all.
    ep1_steps = set(ds.step[ds.episode == 1].tolist())
    assert 7 not in ep1_steps and 6 not in ep1_steps
    assert {4, 5}.issubset(ep1_steps)


def test_weighting_iwr_and_sirius(mixed_workspace: Path) -> None:
    ds = load_dataset(mixed_workspace, chunk_size=TINY_CHUNK)
    is_int = ds.action_mode == HUMAN
    w = sample_weights(ds, "iwr")
    assert float(w[is_int].sum()) == pytest.approx(0.5)
    assert float(w.sum()) == pytest.approx(1.0)
    s = sample_weights(ds, "sirius", sirius_intervention_weight=3.0, sirius_pre_intervention_s=0.1)
    pre = (ds.action_mode == ROBOT) & (ds.steps_to_intervention <= 2)
    assert pre.any() and float(s[pre].sum()) == 0.0  # just before a takeover: left out
    demo = ds.action_mode == DEMO
    ratio = float(s[is_int][0] / s[demo][0])
    assert ratio == pytest.approx(3.0)
    with pytest.raises(UsageError, match="weighting"):
        sample_weights(ds, "magic")


def test_split_is_by_episode_and_deterministic() -> None:
    train, val = episode_split(10, 0.2, seed=4)
    assert len(val) == 2 and not set(train) & set(val) and sorted(train + val) == list(range(10))
    assert episode_split(10, 0.2, seed=4) == (train, val)
    assert episode_split(1, 0.2, seed=4) == ([0], [])


def test_empty_workspace_is_a_clear_error(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "empty")
    with pytest.raises(UsageError, match="no recorded episodes"):
        load_dataset(ws)


def test_augmentation_keeps_dtype_and_is_reproducible() -> None:
    images = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)
    cfg = AugmentConfig(brightness=0.3, contrast=0.3, saturation=0.3, shift_px=2)
    a = augment_images(images, cfg, torch.Generator().manual_seed(1))
    b = augment_images(images, cfg, torch.Generator().manual_seed(1))
    assert a.dtype == torch.uint8 and a.shape == images.shape
    assert torch.equal(a, b) and not torch.equal(a, images)
    off = AugmentConfig.off()
    assert augment_images(images, off, torch.Generator()) is images


def test_colour_augmentations_keep_the_scene_and_change_its_colours() -> None:
    """Channel shuffle permutes colours (an image with distinct channel means comes back with
    the same set of means in another order); gains and noise stay within their bounds."""
    rows = torch.arange(16, dtype=torch.float32)[None, :, None, None].expand(8, 16, 16, 1)
    images = torch.cat([rows * 2 + 40, rows + 100, rows * 3 + 10], dim=3).to(torch.uint8)
    shuffle = dataclasses.replace(AugmentConfig.off(), channel_shuffle=1.0)
    out = augment_images(images, shuffle, torch.Generator().manual_seed(3)).to(torch.float32)
    means_in = sorted(images.to(torch.float32).mean(dim=(0, 1, 2)).tolist())
    for img in out:
        assert sorted(img.mean(dim=(0, 1)).tolist()) == pytest.approx(means_in)
    assert any(not torch.equal(o, images[0].to(torch.float32)) for o in out)
    gain = dataclasses.replace(AugmentConfig.off(), channel_gain=0.3, noise_std=2.0)
    g = augment_images(images, gain, torch.Generator().manual_seed(4)).to(torch.float32)
    ratio = (g.mean(dim=(1, 2)) / images.to(torch.float32).mean(dim=(1, 2)))
    assert float(ratio.min()) > 0.65 and float(ratio.max()) < 1.35


def test_camera_augmentation_draws_each_effect_within_its_severity() -> None:
    """`augment = "camera"`: exposure clipped within +-2 stops, blur that smooths an edge,
    sensor noise, covered patches of the image's own colours; reproducible from the seed, and
    about `camera_p` of the samples touched by each effect."""
    half = torch.zeros(64, 16, 16, 3)
    half[:, :, 8:] = 200.0  # a vertical edge, dark on the left
    images = half.to(torch.uint8)
    off = AugmentConfig.off()
    for field, kwargs in (("exposure", {"exposure_stops": 2.0}), ("blur", {"blur_sigma_px": 2.0}),
                          ("noise", {"sensor_noise_std": 25.5}), ("erase", {"erase_fraction": 0.5})):
        cfg = dataclasses.replace(off, camera_p=0.5, **kwargs)
        out = augment_images(images, cfg, torch.Generator().manual_seed(5))
        again = augment_images(images, cfg, torch.Generator().manual_seed(5))
        assert torch.equal(out, again), field
        changed = [not torch.equal(o, images[0]) for o in out]
        assert 16 <= sum(changed) <= 48, (field, sum(changed))  # camera_p of 64, loosely
        o = out.to(torch.float32)
        if field == "exposure":  # a gain on the bright side, 2^-2..2^2, clipped at 255
            bright = o[:, 0, 12, 0]
            assert float(bright.min()) >= 200 / 4 - 1 and float(bright.max()) <= 255
            assert float(o[:, :, :8].max()) == 0.0, "black stays black"
        if field == "blur":  # the edge spreads: grey values appear beside it
            grey = ((o[:, 0, 6:10, 0] > 0) & (o[:, 0, 6:10, 0] < 200)).any(dim=1)
            assert torch.equal(grey, torch.tensor(changed))
        if field == "erase":  # a patch in one of the image's own colours
            assert set(torch.unique(o).tolist()) <= {0.0, 200.0}
    # The batched blur is scipy's Gaussian filter, image by image, whatever else is in the batch.
    from scipy.ndimage import gaussian_filter
    pics = torch.rand(3, 20, 20, 3, generator=torch.Generator().manual_seed(6)) * 255
    sigmas = torch.tensor([0.5, 1.0, 2.0])
    blurred = gaussian_blur(pics, sigmas, radius=6)
    for i, sigma in enumerate(sigmas.tolist()):
        expected = gaussian_filter(pics[i].numpy(), sigma=(sigma, sigma, 0), mode="nearest",
                                   truncate=6 / sigma)
        assert blurred[i].numpy() == pytest.approx(expected, abs=1e-3)
    assert AugmentConfig.named("camera") == AugmentConfig.camera()
    assert AugmentConfig.camera().camera_active and not AugmentConfig().camera_active
    with pytest.raises(ValueError, match="use one of on, off, camera"):
        AugmentConfig.named("strong")


def test_labels_are_the_operators_intent_where_recorded(tmp_path: Path) -> None:
    """label "intent" learns human_action (before the Arbiter's limits), "sent" the command."""
    ws = make_workspace(tmp_path / "ws")
    write_episode(ws, [None, DEMO, DEMO, DEMO, DEMO], intent=True)
    intent = load_dataset(ws, chunk_size=2)
    sent = load_dataset(ws, chunk_size=2, label="sent")
    for ds, per_step in ((intent, 0.1), (sent, 0.01)):
        for i in range(len(ds)):
            step = int(ds.step[i])
            for k in range(2):
                if ds.mask[i, k]:
                    assert float(ds.actions[i, k, 0]) == pytest.approx((step + k) * per_step)
    with pytest.raises(UsageError, match="label 'both'"):
        load_dataset(ws, label="both")


def test_hindsight_dock_pose_from_the_last_pose_of_a_docked_episode() -> None:
    # The robot ends docked at (2, 1) facing +y (yaw 90 deg). One metre back along its final
    # heading, 10 cm to its left, turned 10 degrees left of it: ahead 1, lateral 0.1, heading 10.
    yaw_f = np.pi / 2
    start = (2.0 - 0.1, 1.0 - 1.0, yaw_f + np.radians(10))  # left of +y is -x
    odom = np.array([[*start, 0.2, 0.0], [2.0, 1.0, yaw_f, 0.05, 0.0]])
    pose, valid = hindsight_dock_pose(odom, docked=True)
    assert valid.all()
    np.testing.assert_allclose(pose[0], [1.0, 0.1, np.radians(10)], atol=1e-6)
    np.testing.assert_allclose(pose[1], [0.0, 0.0, 0.0], atol=1e-6)
    _, valid = hindsight_dock_pose(odom, docked=False)
    assert not valid.any()
    odom[0, 0] = np.nan  # a step without odometry has no target
    _, valid = hindsight_dock_pose(odom, docked=True)
    assert valid.tolist() == [False, True]
