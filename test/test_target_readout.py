"""specprune_ros.eval.target_readout on the real simulator: the readout is the first chunk
step's head coordinates 0-2 over the checkpoint's label scale, each object's distance is
measured from its true offset to the end effector, spreads compare only tasks of one
suite, and a checkpoint without the fixed readout is refused."""
import json

import numpy as np
import pytest
import torch

from specprune.train.auxiliary import fixed_target_readout
from specprune_ros.eval import target_readout
from specprune_ros.eval.target_readout import Readout
from specprune_ros.sim.sim_arm import SimArm, SimArmConfig

from core_helpers import tiny_policy

SPATIAL_OBJECTS = {"red_cube_1", "red_cube_2", "green_cylinder", "blue_cube", "plate"}


def test_the_fixed_readout_averages_coordinates_0_to_2_of_the_first_chunk_step():
    hidden = torch.full((2, 24, 5), 100.0)  # 3 chunk steps x 8 action dims: only 0..6 count
    hidden[:, :7, :3] = torch.arange(21.0).view(7, 3)
    np.testing.assert_allclose(fixed_target_readout(hidden, 7).numpy(),
                               [[9.0, 10.0, 11.0]] * 2)


def test_the_readout_points_at_the_object_the_head_states_encode():
    """The head input is overwritten with red_cube_2's true offset x the scale (on
    sim_spatial_0, whose instruction names red_cube_1): the readout finds red_cube_2 at
    distance ~0 and every other object at its true distance."""
    policy = tiny_policy()
    dims = len(policy.layout.action_names)
    with SimArm(SimArmConfig(task="sim_spatial_0", horizon=220)) as arm:
        def encode_cube_2(module, args):
            obs = arm.last_observation
            offset = obs.point_in_base(obs.extras["red_cube_2_pos"]) - obs.proprio_in_base()[:3]
            head = args[0].clone()
            head[:, :dims, :3] = torch.tensor(offset * 10.0, dtype=head.dtype)
            return (head,) + tuple(args[1:])

        policy.model.action_head.register_forward_pre_hook(encode_cube_2)
        r = target_readout.ReadoutProbe(policy, scale=10.0).read(arm, 610000)
    assert r.named == "red_cube_1"
    assert set(r.distance) == set(r.offset) == SPATIAL_OBJECTS
    assert r.nearest == "red_cube_2" and r.distance["red_cube_2"] < 1e-5
    for name, offset in r.offset.items():
        assert r.distance[name] == pytest.approx(np.linalg.norm(np.subtract(r.readout, offset)))
    assert r.distance["red_cube_1"] > 0.1  # the two red cubes stand apart


def _readout(task, seed, point):
    return Readout(task, seed, "red_cube_1", list(point), {"red_cube_1": [0.1, 0.0, 0.0]})


def test_the_spread_compares_only_the_tasks_of_one_suite():
    readouts = [_readout("sim_spatial_0", 1, (0, 0, 0)),
                _readout("sim_spatial_1", 1, (0.03, 0.04, 0)),
                _readout("sim_spatial_1", 2, (0, 0, 0)), _readout("sim_goal_0", 1, (1, 1, 1))]
    assert target_readout.spread(readouts) == {"sim_spatial_0 vs sim_spatial_1": {1: 0.05}}
    assert "sim_spatial_0 vs sim_spatial_1: the readouts differ by (cm, per seed) 1 5.0" in \
        target_readout.report(readouts)


def test_the_scale_comes_from_the_checkpoint_and_other_readouts_are_refused(tmp_path):
    def write(**cfg):
        (tmp_path / "training_summary.json").write_text(json.dumps({"config": cfg}))

    with pytest.raises(ValueError, match="training_summary.json is missing"):
        target_readout.readout_scale(str(tmp_path))
    write(aux_target=0.3, aux_target_readout="fixed", aux_target_scale=5.0)
    assert target_readout.readout_scale(str(tmp_path)) == 5.0
    write(aux_target=0.3, aux_target_readout="linear", aux_target_scale=10.0)
    with pytest.raises(ValueError, match="not trained with the fixed target readout"):
        target_readout.readout_scale(str(tmp_path))
    write(aux_target=0.0, aux_target_readout="fixed", aux_target_scale=10.0)
    with pytest.raises(ValueError, match="not trained with the fixed target readout"):
        target_readout.readout_scale(str(tmp_path))


def test_a_task_outside_the_tabletop_suites_is_refused_before_loading(capsys):
    assert target_readout.main(["--policy", "/nonexistent", "--tasks",
                                "sim_spatial_0,pick_color"]) == 2
    assert "'pick_color': not a tabletop suite task" in capsys.readouterr().err
