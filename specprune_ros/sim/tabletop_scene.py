"""The robosuite environment of the LIBERO-shaped suites (``tabletop_suites``). No ROS imports.

``TabletopScene(task_name=...)``: Lift's table and Panda with the task's objects (cubes,
cylinders, a plate, a basket) placed by the task's layout rule from the environment's rng
at every reset. Success is the task's goal, every part at once, with the object let go:

- ``on obj plate``: the object's centre within the plate's radius less 1 cm of the plate's
  centre (horizontally), its bottom within ON_BAND of the plate's top;
- ``in obj basket``: the object's centre inside the basket's inner walls less 5 mm, its
  bottom below the walls' top (a cylinder dropped onto a cube already there stands on it);
- and neither part's object held by the gripper (robosuite's grasp check), so a cube
  carried over the plate is not yet on it.

Defining the class registers it with robosuite, as ``sim_tasks`` does for its tasks.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
from robosuite.environments.manipulation.lift import Lift
from robosuite.environments.manipulation.manipulation_env import ManipulationEnv
from robosuite.models.objects import Bin, BoxObject, CylinderObject, MujocoObject
from robosuite.models.tasks import ManipulationTask
from robosuite.utils.transform_utils import convert_quat

from specprune_ros.sim.sim_tasks import table_arena
from specprune_ros.sim.tabletop_suites import (BASKET_SIZE, COLOURS, CUBE_HALF, CYLINDER_SIZE,
                                               PLATE_SIZE, TABLETOP_TASKS, Goal, SceneObject,
                                               TabletopTask, sample_layout)

#: Yaw range (rad) of cubes and cylinders at reset: within +-0.3 a top-down grasp without
#: wrist rotation closes on two faces (pick_color's range).
ITEM_YAW = 0.3
#: How far (m) the bottom of an object on the plate may sit from the plate's top.
ON_BAND = (-0.01, 0.02)
#: Basket wall thickness (m) and the margin inside its walls that counts as in.
BASKET_WALL, IN_MARGIN = 0.01, 0.005
#: Heavy fixtures: a plate or basket the arm brushes should not slide away (kg / m^3).
FIXTURE_DENSITY = 4000.0


def make_object(spec: SceneObject) -> MujocoObject:
    """The robosuite object of one scene object (free joint, named ``spec.name``)."""
    rgba = list(COLOURS[spec.colour])
    if spec.kind == "cube":
        return BoxObject(name=spec.name, size=[CUBE_HALF] * 3, rgba=rgba)
    if spec.kind == "cylinder":
        return CylinderObject(name=spec.name, size=list(CYLINDER_SIZE), rgba=rgba,
                              friction=(1.0, 0.005, 0.0001))
    if spec.kind == "plate":
        return CylinderObject(name=spec.name, size=list(PLATE_SIZE), rgba=rgba,
                              density=FIXTURE_DENSITY)
    if spec.kind == "basket":
        return Bin(name=spec.name, bin_size=BASKET_SIZE, wall_thickness=BASKET_WALL,
                   transparent_walls=False, use_texture=False, rgba=rgba,
                   density=FIXTURE_DENSITY)
    raise ValueError(f"{spec.name}: unknown object kind {spec.kind!r}")


class TabletopScene(Lift):
    """Lift's table with one ``tabletop_suites`` task's objects; ``goal`` is this episode's
    (a left / right task names its cube at reset)."""

    def __init__(self, *args, task_name: str = "sim_spatial_0", **kwargs) -> None:
        if task_name not in TABLETOP_TASKS:
            raise ValueError(f"unknown tabletop task {task_name!r}; one of "
                             f"{sorted(TABLETOP_TASKS)}")
        self.task: TabletopTask = TABLETOP_TASKS[task_name]
        self.goal: Goal = self.task.goal
        self.items: Dict[str, MujocoObject] = {}
        super().__init__(*args, **kwargs)

    @property
    def instruction(self) -> str:
        """The task's language instruction."""
        return self.task.instruction

    def _load_model(self) -> None:
        """Table arena, the robot, and the task's objects (placed at reset)."""
        arena = table_arena(self)
        self.items = {o.name: make_object(o) for o in self.task.objects}
        self.cube = self.items[self.task.movable[0]]  # Lift's helpers read self.cube
        self.model = ManipulationTask(mujoco_arena=arena,
                                      mujoco_robots=[r.robot_model for r in self.robots],
                                      mujoco_objects=list(self.items.values()))

    def _setup_references(self) -> None:
        """Body ids of the objects."""
        ManipulationEnv._setup_references(self)
        self.item_body_ids = {n: self.sim.model.body_name2id(o.root_body)
                              for n, o in self.items.items()}
        self.cube_body_id = self.item_body_ids[self.task.movable[0]]

    def _setup_observables(self):
        """The robot's observables only: object state is read through ``scene_state``."""
        return ManipulationEnv._setup_observables(self)

    def _reset_internal(self) -> None:
        """The robot's reset, then the objects where the layout rule puts them."""
        ManipulationEnv._reset_internal(self)
        layout = sample_layout(self.task, self.rng)
        table = np.asarray(self.table_offset, dtype=np.float64)
        movable = self.task.movable
        for name, xy in layout.items():
            obj = self.items[name]
            yaw = self.rng.uniform(-ITEM_YAW, ITEM_YAW) if name in movable else 0.0
            pos = np.array([table[0] + xy[0], table[1] + xy[1],
                            table[2] - obj.bottom_offset[2] + 0.001])
            quat_wxyz = np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
            self.sim.data.set_joint_qpos(obj.joints[0], np.concatenate([pos, quat_wxyz]))
        self.sim.forward()
        positions = {n: tuple(self.sim.data.body_xpos[i]) for n, i in self.item_body_ids.items()}
        self.goal = self.task.resolve(positions)

    def scene_state(self) -> Dict[str, np.ndarray]:
        """Every object's world position (``<name>_pos``) and (x, y, z, w) orientation
        (``<name>_quat``), as LIBERO's observation names them."""
        state = {}
        for name, body in self.item_body_ids.items():
            state[f"{name}_pos"] = np.array(self.sim.data.body_xpos[body], dtype=np.float64)
            state[f"{name}_quat"] = convert_quat(
                np.array(self.sim.data.body_xquat[body], dtype=np.float64), to="xyzw")
        return state

    def part_holds(self, relation: str, obj: str, target: str) -> bool:
        """Whether ``obj`` is on / in ``target`` and let go (the geometry first: the grasp
        check walks the contacts, and this runs every control tick)."""
        p = self.sim.data.body_xpos[self.item_body_ids[obj]]
        t = self.sim.data.body_xpos[self.item_body_ids[target]]
        bottom = p[2] + self.items[obj].bottom_offset[2]
        if relation == "on":
            top = t[2] + PLATE_SIZE[1]
            placed = (np.linalg.norm(p[:2] - t[:2]) < PLATE_SIZE[0] - 0.01
                      and ON_BAND[0] <= bottom - top <= ON_BAND[1])
        elif relation == "in":
            inner = BASKET_SIZE[0] / 2 - BASKET_WALL - IN_MARGIN
            placed = (np.all(np.abs(p[:2] - t[:2]) < inner)
                      and bottom < t[2] + BASKET_SIZE[2] / 2)
        else:
            raise ValueError(f"unknown relation {relation!r}")
        return bool(placed) and not self._check_grasp(gripper=self.robots[0].gripper,
                                                      object_geoms=self.items[obj])

    def grasped(self, obj: str) -> bool:
        """Whether the gripper holds ``obj`` (robosuite's grasp check)."""
        return bool(self._check_grasp(gripper=self.robots[0].gripper,
                                      object_geoms=self.items[obj]))

    def _check_success(self) -> bool:
        """Every part of this episode's goal holds."""
        return all(self.part_holds(*part) for part in self.goal)
