"""specprune_ros.eval.target_readout on the real simulator: the readout is the first chunk
step's head coordinates 0-2 over the label scale, each object's distance is measured from
its true offset to the end effector in the base frame, and the spread compares one seed's
readouts across instructions."""
import numpy as np

from specprune_ros.eval import target_readout
from specprune_ros.sim.sim_arm import SimArm, SimArmConfig

from core_helpers import tiny_policy

SPATIAL_OBJECTS = {"red_cube_1", "red_cube_2", "green_cylinder", "blue_cube", "plate"}


def test_the_readout_and_the_distances_on_two_instructions_of_one_scene():
    policy = tiny_policy()
    probe = target_readout.ReadoutProbe(policy)
    seen = []
    policy.model.action_head.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].detach().clone()))
    readouts = []
    for task in ("sim_spatial_0", "sim_spatial_1"):
        with SimArm(SimArmConfig(task=task, horizon=220)) as arm:
            r = probe.read(arm, 610000)
            head = seen[-1][0, :len(policy.layout.action_names), :3]
            np.testing.assert_allclose(r.readout, head.mean(0).numpy() / 10.0, rtol=1e-5)
            obs = arm.last_observation
            eef = obs.proprio_in_base()[:3]
            assert set(r.distance) == SPATIAL_OBJECTS
            for name, d in r.distance.items():
                offset = obs.point_in_base(obs.extras[f"{name}_pos"]) - eef
                assert abs(d - np.linalg.norm(np.array(r.readout) - offset)) < 1e-6
            assert r.nearest == min(r.distance, key=r.distance.get)
            readouts.append(r)
    assert [r.named for r in readouts] == ["red_cube_1", "red_cube_2"]
    gap = np.linalg.norm(np.subtract(readouts[0].readout, readouts[1].readout))
    assert target_readout.spread(readouts) == {610000: gap}
    text = target_readout.report(readouts)
    assert "sim_spatial_0: readout nearest the named object on" in text
    assert f"610000 {100 * gap:.1f}" in text


def test_a_task_outside_the_tabletop_suites_is_refused(capsys):
    assert target_readout.main(["--policy", "tiny", "--tasks", "pick_color"]) == 2
    assert "'pick_color' is not a tabletop suite task" in capsys.readouterr().err
