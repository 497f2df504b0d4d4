"""The pick_color task, the scripted expert and the HDF5 demonstration recorder (real MuJoCo)."""
import json

import h5py
import numpy as np
import pytest

from specprune_ros.sim.demos import NoiseConfig, RecordConfig, main, record, record_episode
from specprune_ros.sim.expert import DESCEND, ExpertConfig, ScriptedExpert
from specprune_ros.sim.sim_arm import SimArm, SimArmConfig
from specprune_ros.sim.sim_tasks import CUBE_COLORS, CUBE_HALF_SIZE, LIFT_HEIGHT

CAMERAS = ("agentview", "robot0_eye_in_hand")
TABLE_TOP = 0.8  # Lift's table offset (m)


@pytest.fixture(scope="module")
def arm():
    with SimArm(SimArmConfig(task="pick_color", horizon=120)) as sim:
        yield sim


def test_pick_color_is_seeded_and_names_its_target(arm):
    first = arm.reset(seed=3)
    instruction, target = arm.instruction, first.extras["target_pos"].copy()
    again = arm.reset(seed=3)
    assert arm.instruction == instruction
    np.testing.assert_allclose(again.extras["target_pos"], target)
    color = instruction.split()[-2]
    assert instruction == f"pick up the {color} cube" and color in CUBE_COLORS
    np.testing.assert_allclose(again.extras[f"{color}_cube_pos"], target)
    seen = set()
    for seed in range(12):
        arm.reset(seed=seed)
        seen.add(arm.instruction)
    assert len(seen) == 3, seen  # every colour gets asked for
    cubes = [again.extras[f"{c}_cube_pos"] for c in CUBE_COLORS]
    gaps = [np.linalg.norm((a - b)[:2]) for i, a in enumerate(cubes) for b in cubes[i + 1:]]
    assert min(gaps) > 0.04  # placed without overlap
    assert not again.success


def test_step_without_render_skips_cameras_and_observe_renders(arm):
    arm.reset(seed=0)
    moved = arm.step(np.array([0, 0, 1.0, 0, 0, 0, -1]), render=False)
    assert moved.images == {}
    seen = arm.observe()
    assert seen.sim_time == moved.sim_time and seen.step == moved.step
    assert sorted(seen.images) == sorted(CAMERAS)
    assert all(img.shape == (224, 224, 3) and img.dtype == np.uint8
               for img in seen.images.values())
    assert sorted(arm.step(np.zeros(7)).images) == sorted(CAMERAS)


def test_expert_lifts_the_named_cube_and_leaves_the_others(arm):
    for seed in (1, 2):
        obs = arm.reset(seed=seed)
        color = arm.instruction.split()[-2]
        start = {c: obs.extras[f"{c}_cube_pos"].copy() for c in CUBE_COLORS}
        expert = ScriptedExpert()
        phases = set()
        for _ in range(100):
            obs = arm.step(expert.act(obs), render=False)
            phases.add(expert.phase)
            if obs.success:
                break
        assert obs.success, (seed, phases)
        assert obs.extras["target_pos"][2] > start[color][2] + LIFT_HEIGHT - 0.03
        for other in set(CUBE_COLORS) - {color}:
            assert obs.extras[f"{other}_cube_pos"][2] < TABLE_TOP + CUBE_HALF_SIZE + 0.01
        assert DESCEND in phases


def test_expert_needs_privileged_state(arm):
    obs = arm.reset(seed=0)
    obs.extras.clear()
    with pytest.raises(ValueError, match="target_pos"):
        ScriptedExpert().act(obs)


@pytest.mark.parametrize("bad", [dict(gain=0.0), dict(close_ticks=0), dict(hover_height=-1.0),
                                 dict(gain=True), dict(release_ticks=2.5)])
def test_expert_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match=f"ExpertConfig.{next(iter(bad))}"):
        ExpertConfig(**bad)


def test_noise_config_rejects_bad_values():
    with pytest.raises(ValueError, match="push_ticks"):
        NoiseConfig(push_ticks=(5, 2))
    with pytest.raises(ValueError, match="max_noise_std"):
        NoiseConfig(max_noise_std=2.0)
    with pytest.raises(ValueError, match="push_magnitude"):
        NoiseConfig(push_magnitude=float("nan"))
    with pytest.raises(ValueError, match="push_ticks"):
        NoiseConfig(push_ticks=(2.5, 3))


def test_noisy_episode_records_clean_labels_for_every_frame(arm):
    config = RecordConfig(horizon=120, noise=NoiseConfig(max_noise_std=0.3, push_probability=1.0))
    episode = record_episode(arm, seed=7, config=config)
    assert episode is not None
    n = len(episode["actions"])
    assert episode["proprio"].shape == (n, 8)
    assert all(frames.shape == (n, 224, 224, 3) for frames in episode["images"].values())
    labels = episode["actions"]
    assert np.all(np.abs(labels) <= 1.0) and set(np.unique(labels[:, 6])) <= {-1.0, 1.0}
    assert np.all(labels[:, 3:6] == 0.0)  # no rotation in the expert's labels
    assert labels[-1, 6] == 1.0  # the episode ends holding the cube
    # privileged cube positions (base frame): the named one ends lifted with the gripper,
    # the first label points at it, the others stay on the table
    cubes, colours = episode["cube_pos"], episode["cube_colors"]
    assert cubes.shape == (n, 3, 3) and colours == ["red", "green", "blue"]
    named = colours.index(episode["instruction"].split()[-2])
    rel = cubes[:, named] - episode["proprio"][:, :3]
    assert np.linalg.norm(rel[-1]) < 0.03
    first = rel[0, :2] * 15.0  # the expert's gain: action per metre
    np.testing.assert_allclose(labels[0, :2], np.clip(first, -1, 1), atol=0.05)
    others = [i for i in range(3) if i != named]
    # (the cubes are placed 1 cm up at reset and have settled a few ticks later)
    np.testing.assert_allclose(cubes[-1, others, 2], cubes[10, others, 2], atol=0.005)


def test_record_writes_robomimic_layout(tmp_path, arm):
    out = tmp_path / "demos.hdf5"
    summary = record(str(out), episodes=2, seed=4, config=RecordConfig(horizon=120),
                     workers=1, log=lambda _: None)
    assert summary["written"] == 2 and summary["tried"] >= 2
    with h5py.File(out, "r") as f:
        data = f["data"]
        env_args = json.loads(data.attrs["env_args"])
        assert env_args["task"] == "pick_color" and env_args["cameras"] == list(CAMERAS)
        assert sorted(data) == ["demo_0", "demo_1"]
        total = 0
        for name in data:
            demo = data[name]
            n = int(demo.attrs["num_samples"])
            total += n
            assert demo["actions"].shape == (n, 7) and demo["obs/proprio"].shape == (n, 8)
            for cam in CAMERAS:
                assert demo[f"obs/{cam}_image"].shape == (n, 224, 224, 3)
            assert demo.attrs["instruction"].startswith("pick up the ")
            assert demo["obs/cube_pos"].shape == (n, 3, 3)
            assert json.loads(demo.attrs["cube_colors"]) == ["red", "green", "blue"]
            assert bool(demo.attrs["success"])
        assert int(data.attrs["total"]) == total == summary["samples"]
        assert [int(data[d].attrs["seed"]) for d in ("demo_0", "demo_1")] == [4, 5]


def test_cli_rejects_bad_arguments(capsys):
    assert main(["--episodes", "1", "--noise-std", "5", "--out", "/nonexistent/x.hdf5"]) == 2
    assert "max_noise_std" in capsys.readouterr().err
