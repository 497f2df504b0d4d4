"""Language-conditioned robosuite tasks for the simulated arm. No ROS imports.

``PickColorCube``: three cubes (red, green, blue) at random, non-overlapping places on
Lift's table; each episode names one of them ("pick up the green cube") and succeeds
when that cube is 4 cm above the table, as Lift does. The instruction decides which
image region matters, which is what SpecPrune's text -> visual importance score uses.

Defining the class registers it with robosuite (its environment metaclass does that),
so ``robosuite.make("PickColorCube", ...)`` works once this module is imported.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
from robosuite.environments.manipulation.lift import Lift
from robosuite.environments.manipulation.manipulation_env import ManipulationEnv
from robosuite.models.arenas import TableArena
from robosuite.models.objects import BoxObject
from robosuite.models.tasks import ManipulationTask
from robosuite.utils.placement_samplers import UniformRandomSampler
from robosuite.utils.transform_utils import convert_quat

#: Cube colours (RGBA), far apart in hue so that one patch's colour says which cube it is.
CUBE_COLORS: Dict[str, Tuple[float, float, float, float]] = {
    "red": (0.85, 0.10, 0.10, 1.0),
    "green": (0.10, 0.65, 0.15, 1.0),
    "blue": (0.10, 0.25, 0.90, 1.0),
}
#: Half-side of every cube (m): Lift's cube size, small enough for the Panda's fingers.
CUBE_HALF_SIZE = 0.021
#: Placement ranges (m) around the table centre and yaw range (rad) of the cubes. The yaw
#: stays within +-0.3 rad so a top-down grasp without wrist rotation closes on two faces.
PLACEMENT_X = (-0.10, 0.10)
PLACEMENT_Y = (-0.15, 0.15)
PLACEMENT_YAW = (-0.3, 0.3)
#: Lift's success height above the table top (m).
LIFT_HEIGHT = 0.04
INSTRUCTION_TEMPLATE = "pick up the {color} cube"


def table_arena(env: Lift) -> TableArena:
    """Load the robot (robosuite's ManipulationEnv part of ``_load_model``; Lift's own version
    would build its single cube), stand it at Lift's table and return Lift's table arena."""
    ManipulationEnv._load_model(env)
    xpos = env.robots[0].robot_model.base_xpos_offset["table"](env.table_full_size[0])
    env.robots[0].robot_model.set_base_xpos(xpos)
    arena = TableArena(table_full_size=env.table_full_size, table_friction=env.table_friction,
                       table_offset=env.table_offset)
    arena.set_origin([0, 0, 0])
    return arena


class PickColorCube(Lift):
    """Lift with three coloured cubes; ``target_color`` is drawn from the env rng at reset."""

    def __init__(self, *args, **kwargs) -> None:
        self.target_color = next(iter(CUBE_COLORS))
        self.cubes: Dict[str, BoxObject] = {}
        super().__init__(*args, **kwargs)

    @property
    def instruction(self) -> str:
        """The episode's language instruction."""
        return INSTRUCTION_TEMPLATE.format(color=self.target_color)

    def _load_model(self) -> None:
        """Table arena, the robot, and the three cubes with one placement sampler."""
        arena = table_arena(self)
        half = [CUBE_HALF_SIZE] * 3
        self.cubes = {color: BoxObject(name=f"{color}_cube", size_min=half, size_max=half,
                                       rgba=list(rgba), rng=self.rng)
                      for color, rgba in CUBE_COLORS.items()}
        self.cube = self.cubes[self.target_color]  # Lift's helpers read self.cube
        objects = list(self.cubes.values())
        self.placement_initializer = UniformRandomSampler(
            name="CubeSampler", mujoco_objects=objects, x_range=list(PLACEMENT_X),
            y_range=list(PLACEMENT_Y), rotation=PLACEMENT_YAW, rotation_axis="z",
            ensure_object_boundary_in_range=False, ensure_valid_placement=True,
            reference_pos=self.table_offset, z_offset=0.01, rng=self.rng)
        self.model = ManipulationTask(mujoco_arena=arena,
                                      mujoco_robots=[r.robot_model for r in self.robots],
                                      mujoco_objects=objects)

    def _setup_references(self) -> None:
        """Body ids of the cubes."""
        ManipulationEnv._setup_references(self)
        self.cube_body_ids = {c: self.sim.model.body_name2id(cube.root_body)
                              for c, cube in self.cubes.items()}
        self.cube_body_id = self.cube_body_ids[self.target_color]

    def _setup_observables(self):
        """The robot's observables only: object state is read through ``target_pose``."""
        return ManipulationEnv._setup_observables(self)

    def _reset_internal(self) -> None:
        """Place the cubes (Lift does it), then draw the target colour from the env rng."""
        super()._reset_internal()
        colors = list(CUBE_COLORS)
        self.target_color = colors[int(self.rng.integers(len(colors)))]
        self.cube = self.cubes[self.target_color]
        self.cube_body_id = self.cube_body_ids[self.target_color]

    def cube_pose(self, color: str) -> Tuple[np.ndarray, np.ndarray]:
        """World (position (3,), quaternion (x, y, z, w)) of the cube of ``color``."""
        body = self.cube_body_ids[color]
        pos = np.array(self.sim.data.body_xpos[body], dtype=np.float64)
        quat = convert_quat(np.array(self.sim.data.body_xquat[body], dtype=np.float64),
                            to="xyzw")
        return pos, quat

    def _check_success(self) -> bool:
        """The named cube is LIFT_HEIGHT above the table top."""
        height = self.sim.data.body_xpos[self.cube_body_id][2]
        return bool(height > self.model.mujoco_arena.table_offset[2] + LIFT_HEIGHT)
