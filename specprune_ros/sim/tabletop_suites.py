"""Four task suites shaped like LIBERO's, on our own simulator: what each task holds. No ROS,
no robosuite (``tabletop_scene`` builds them).

Why they exist: issue #19's fallback. LIBERO itself runs here, but a policy trained from
scratch on this 2-core CPU did not learn even one LIBERO task from new initial states
(README, "LIBERO"); these suites keep LIBERO's structure with scenes a small vision encoder
can read (flat-coloured primitives on a plain table, ~15 ms a view):

- ``sim_spatial_<i>``: two identical red cubes, each next to a different landmark (a green
  cylinder, a blue cube); which one to put on the plate is said by where it is, as
  LIBERO-Spatial names one of two identical bowls ("the black bowl next to the ramekin").
- ``sim_object_<i>``: four different objects; the named one goes into the basket
  (LIBERO-Object).
- ``sim_goal_<i>``: one scene, laid out the same every episode up to a few centimetres;
  the instruction alone says which goal (LIBERO-Goal).
- ``sim_long_<i>``: two placements in one instruction (LIBERO-10).

Goals are written as LIBERO's BDDL goals are read by ``libero_experts.expert_for``
(``[["on", obj, target], ...]``), so the same scripted experts solve both, and the scene's
success check evaluates the same predicates. Horizons are openvla-oft's LIBERO step limits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

Goal = Tuple[Tuple[str, str, str], ...]

#: Object kinds and their sizes (metres): cubes are Lift's (half side 2.1 cm), cylinders
#: stand upright (radius, half height), the plate is a flat disc, the basket an open box
#: (outer x, y, z) with 1 cm walls, small enough to stand whole in the front camera's view
#: beside the others (that camera sees |y| < 0.25-0.28 m of the table).
CUBE_HALF = 0.021
CYLINDER_SIZE = (0.02, 0.035)
PLATE_SIZE = (0.065, 0.006)
BASKET_SIZE = (0.13, 0.13, 0.06)
#: Half extents (x, y, z) of each kind's bounding box (a cube's x / y half side widened for
#: its yaw of up to 0.3 rad): what a frame's object box is projected from.
HALF_EXTENTS = {"cube": (CUBE_HALF * 1.25,) * 2 + (CUBE_HALF,),
                "cylinder": (CYLINDER_SIZE[0],) * 2 + (CYLINDER_SIZE[1],),
                "plate": (PLATE_SIZE[0],) * 2 + (PLATE_SIZE[1],),
                "basket": (BASKET_SIZE[0] / 2, BASKET_SIZE[1] / 2, BASKET_SIZE[2] / 2)}
#: The kinds the gripper picks up (the others are targets).
GRASPABLE = ("cube", "cylinder")
#: Colours (RGBA), far apart in hue, as pick_color's cubes.
COLOURS: Dict[str, Tuple[float, float, float, float]] = {
    "red": (0.85, 0.10, 0.10, 1.0),
    "green": (0.10, 0.65, 0.15, 1.0),
    "blue": (0.10, 0.25, 0.90, 1.0),
    "yellow": (0.90, 0.80, 0.10, 1.0),
    "grey": (0.50, 0.52, 0.58, 1.0),  # the plate: white would vanish on the white table
    "brown": (0.45, 0.28, 0.12, 1.0),
}


@dataclass(frozen=True)
class SceneObject:
    """One body of a scene: ``name`` (the observation's ``<name>_pos``), kind (cube,
    cylinder, plate, basket) and colour (a key of COLOURS)."""

    name: str
    kind: str
    colour: str


@dataclass(frozen=True)
class Layout:
    """Where the objects start (metres, table-centred x forward from the robot's side, y to
    its left). ``rule``: "free" (anywhere in the workspace, apart), "pairs" (spatial: each of
    ``pairs``' first objects within ``near`` of its second), "fixed" (``nominal`` positions
    jittered by up to ``jitter``). ``min_gap``: least centre distance between two objects
    (plus both radii)."""

    rule: str
    pairs: Tuple[Tuple[str, str], ...] = ()
    near: Tuple[float, float] = (0.065, 0.08)
    nominal: Tuple[Tuple[str, float, float], ...] = ()
    jitter: float = 0.02
    min_gap: float = 0.03
    side_gap: Tuple[str, ...] = ()  # two objects at least SIDE_GAP apart along y
    zones: Tuple[Tuple[str, Tuple[float, float], Tuple[float, float]], ...] = ()  # own x, y range

    def __post_init__(self) -> None:
        if self.rule not in ("free", "pairs", "fixed"):
            raise ValueError(f"Layout.rule={self.rule!r}: free, pairs or fixed")
        if (self.rule == "pairs") != bool(self.pairs) or (self.rule == "fixed") != bool(
                self.nominal):
            raise ValueError(f"Layout.rule={self.rule!r}: pairs go with rule pairs, nominal "
                             "positions with rule fixed")
        if not 0.0 < self.near[0] <= self.near[1] or self.jitter < 0 or self.min_gap < 0:
            raise ValueError("Layout: need 0 < near[0] <= near[1], jitter >= 0, min_gap >= 0")
        if self.side_gap and len(self.side_gap) != 2:
            raise ValueError(f"Layout.side_gap={self.side_gap!r}: two objects or none")


@dataclass(frozen=True)
class TabletopTask:
    """One task: the suite it belongs to, its index there, the scene, the instruction, the
    goal (every part must hold at once) and the episode's step limit."""

    suite: str
    index: int
    objects: Tuple[SceneObject, ...]
    layout: Layout
    instruction: str
    goal: Goal
    horizon: int
    side: Optional[str] = None  # "left" / "right": the goal's object is a family, see resolve

    def resolve(self, positions: Dict[str, Tuple[float, float, float]]) -> Goal:
        """The goal with a family name (``red_cube``, for ``red_cube_1`` / ``red_cube_2``)
        replaced by the member on ``side`` as the front camera sees it (left: larger
        ``LEFT_SIGN * y``); the goal as written when ``side`` is None."""
        if self.side is None:
            return self.goal
        sign = LEFT_SIGN if self.side == "left" else -LEFT_SIGN
        parts = []
        for relation, obj, target in self.goal:
            members = [o.name for o in self.objects if o.name.startswith(obj + "_")]
            if members:
                obj = max(members, key=lambda n: sign * positions[n][1])
            parts.append((relation, obj, target))
        return tuple(parts)

    @property
    def name(self) -> str:
        """The task's name, ``<suite>_<index>`` (e.g. ``sim_spatial_0``)."""
        return f"{self.suite}_{self.index}"

    def object(self, name: str) -> SceneObject:
        """The scene object called ``name``; KeyError naming the scene's objects."""
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(f"{self.name} has no object {name!r}; it has "
                       f"{[o.name for o in self.objects]}")

    @property
    def movable(self) -> Tuple[str, ...]:
        """The objects the gripper can pick up (GRASPABLE kinds), in scene order."""
        return tuple(o.name for o in self.objects if o.kind in GRASPABLE)


#: +1 when the front camera ("agentview") shows the robot's +y on the image's left, -1 when
#: on its right (robosuite's agentview stands across the table, facing the robot: -1;
#: test_tabletop_scene projects both and checks).
LEFT_SIGN = -1.0
#: The least y distance between the two red cubes of sim_spatial (so left / right is clear).
SIDE_GAP = 0.1

#: The LIBERO suite each one is modelled on, and openvla-oft's step limit there
#: (libero_protocol.SUITE_MAX_STEPS, written out: that module imports sim_arm, which imports
#: this one; test_tabletop_suites checks they agree).
MODELLED_ON = {"sim_spatial": "libero_spatial", "sim_object": "libero_object",
               "sim_goal": "libero_goal", "sim_long": "libero_10"}
SUITE_HORIZONS = {"sim_spatial": 220, "sim_object": 280, "sim_goal": 300, "sim_long": 520}

_PLATE = SceneObject("plate", "plate", "grey")
_BASKET = SceneObject("basket", "basket", "brown")
_SPATIAL_OBJECTS = (SceneObject("red_cube_1", "cube", "red"),
                    SceneObject("red_cube_2", "cube", "red"),
                    SceneObject("green_cylinder", "cylinder", "green"),
                    SceneObject("blue_cube", "cube", "blue"), _PLATE)
#: The basket stands at the robot's right, on the far half of the table, whole in the front
#: camera's view (test_tabletop_scene checks every object's box is).
_BASKET_ZONE = (("basket", (-0.12, -0.02), (-0.21, -0.17)),)
#: The plate (13 cm across) keeps to the middle of the table, whole in view.
_PLATE_ZONE = (("plate", (-0.11, 0.11), (-0.15, 0.15)),)
_SPATIAL_LAYOUT = Layout("pairs", pairs=(("red_cube_1", "green_cylinder"),
                                         ("red_cube_2", "blue_cube")),
                         side_gap=("red_cube_1", "red_cube_2"), zones=_PLATE_ZONE)
_OBJECT_ITEMS = (SceneObject("red_cube", "cube", "red"),
                 SceneObject("green_cylinder", "cylinder", "green"),
                 SceneObject("blue_cube", "cube", "blue"),
                 SceneObject("yellow_cylinder", "cylinder", "yellow"))
_GOAL_OBJECTS = (SceneObject("red_cube", "cube", "red"),
                 SceneObject("green_cylinder", "cylinder", "green"), _PLATE, _BASKET)
_GOAL_LAYOUT = Layout("fixed", nominal=(("red_cube", 0.06, 0.12), ("green_cylinder", -0.06, 0.0),
                                        ("plate", 0.08, -0.03), ("basket", -0.07, -0.19)),
                      jitter=0.015)
_LONG_OBJECTS = (SceneObject("red_cube", "cube", "red"),
                 SceneObject("green_cylinder", "cylinder", "green"),
                 SceneObject("blue_cube", "cube", "blue"), _PLATE, _BASKET)


def _spatial(index: int, where: str, cube: str, side: Optional[str] = None) -> TabletopTask:
    return TabletopTask("sim_spatial", index, _SPATIAL_OBJECTS, _SPATIAL_LAYOUT,
                        f"pick up the red cube {where} and place it on the plate",
                        (("on", cube, "plate"),), SUITE_HORIZONS["sim_spatial"], side)


def _object(index: int) -> TabletopTask:
    item = _OBJECT_ITEMS[index]
    words = item.name.replace("_", " ")
    return TabletopTask("sim_object", index, _OBJECT_ITEMS + (_BASKET,),
                        Layout("free", zones=_BASKET_ZONE),
                        f"pick up the {words} and place it in the basket",
                        (("in", item.name, "basket"),), SUITE_HORIZONS["sim_object"])


def _goal(index: int, instruction: str, goal: Goal) -> TabletopTask:
    return TabletopTask("sim_goal", index, _GOAL_OBJECTS, _GOAL_LAYOUT, instruction, goal,
                        SUITE_HORIZONS["sim_goal"])


def _long(index: int, instruction: str, goal: Goal) -> TabletopTask:
    return TabletopTask("sim_long", index, _LONG_OBJECTS,
                        Layout("free", zones=_BASKET_ZONE + _PLATE_ZONE),
                        instruction, goal, SUITE_HORIZONS["sim_long"])


#: Every task by name. In sim_spatial, red_cube_1 always stands next to the green cylinder
#: and red_cube_2 next to the blue cube, the two at least SIDE_GAP apart along y, either
#: on either side: "on the left" names whichever red cube the front camera sees on its left.
TABLETOP_TASKS: Dict[str, TabletopTask] = {t.name: t for t in (
    _spatial(0, "next to the green cylinder", "red_cube_1"),
    _spatial(1, "next to the blue cube", "red_cube_2"),
    _spatial(2, "on the left", "red_cube", "left"),
    _spatial(3, "on the right", "red_cube", "right"),
    *(_object(i) for i in range(len(_OBJECT_ITEMS))),
    _goal(0, "put the red cube on the plate", (("on", "red_cube", "plate"),)),
    _goal(1, "put the red cube in the basket", (("in", "red_cube", "basket"),)),
    _goal(2, "put the green cylinder on the plate", (("on", "green_cylinder", "plate"),)),
    _goal(3, "put the green cylinder in the basket", (("in", "green_cylinder", "basket"),)),
    _long(0, "put the red cube and the green cylinder in the basket",
          (("in", "red_cube", "basket"), ("in", "green_cylinder", "basket"))),
    _long(1, "put the red cube on the plate and the blue cube in the basket",
          (("on", "red_cube", "plate"), ("in", "blue_cube", "basket"))),
    _long(2, "put the green cylinder on the plate and the red cube in the basket",
          (("on", "green_cylinder", "plate"), ("in", "red_cube", "basket"))),
)}
SUITES = tuple(SUITE_HORIZONS)


def tabletop_task(name: str) -> Optional[TabletopTask]:
    """The task called ``name``, None when it is not one of these suites' tasks."""
    return TABLETOP_TASKS.get(name)


def suite_tasks(suite: str) -> List[TabletopTask]:
    """The tasks of ``suite`` in index order; ValueError naming the suites."""
    if suite not in SUITE_HORIZONS:
        raise ValueError(f"unknown suite {suite!r}; one of {list(SUITES)}")
    return sorted((t for t in TABLETOP_TASKS.values() if t.suite == suite),
                  key=lambda t: t.index)


# ------------------------------------------------------------------------------ layouts
#: The workspace objects start in (table-centred metres): the Panda reaches all of it from
#: above, and the front camera sees all of it.
WORKSPACE_X = (-0.13, 0.13)
WORKSPACE_Y = (-0.22, 0.22)
#: Footprint radius of each kind (metres): a cube's half diagonal, the plate's and the
#: cylinder's radius, the basket's half diagonal.
FOOTPRINT = {"cube": CUBE_HALF * 1.42, "cylinder": CYLINDER_SIZE[0], "plate": PLATE_SIZE[0],
             "basket": BASKET_SIZE[0] * 0.71}
#: A red cube of sim_spatial is this much farther from the other pair's landmark than the
#: layout's ``near`` bound, so "next to" names one cube only.
SPATIAL_MARGIN = 0.05
_TRIES = 2000


def _apart(name: str, xy: np.ndarray, placed: Dict[str, np.ndarray], task: "TabletopTask",
           gap: float) -> bool:
    r = FOOTPRINT[task.object(name).kind]
    return all(np.linalg.norm(xy - other) >= r + FOOTPRINT[task.object(n).kind] + gap
               for n, other in placed.items())


def _ranges(name: str, task: "TabletopTask") -> Tuple[Tuple[float, float], Tuple[float, float]]:
    for zone, xs, ys in task.layout.zones:
        if zone == name:
            return xs, ys
    return WORKSPACE_X, WORKSPACE_Y


def _inside(xy: np.ndarray, name: str, task: "TabletopTask") -> bool:
    xs, ys = _ranges(name, task)
    return xs[0] <= xy[0] <= xs[1] and ys[0] <= xy[1] <= ys[1]


def _uniform(name: str, task: "TabletopTask", rng: np.random.Generator) -> np.ndarray:
    xs, ys = _ranges(name, task)
    return np.array([rng.uniform(*xs), rng.uniform(*ys)])


def _try_layout(task: "TabletopTask", rng: np.random.Generator) -> Optional[Dict[str, np.ndarray]]:
    layout, placed = task.layout, {}
    if layout.rule == "fixed":
        for name, x, y in layout.nominal:
            placed[name] = np.array([x, y]) + rng.uniform(-layout.jitter, layout.jitter, 2)
        return placed
    followers = {first: second for first, second in layout.pairs}
    # the larger objects first: a basket placed last rarely finds room
    order = sorted((o.name for o in task.objects if o.name not in followers),
                   key=lambda n: -FOOTPRINT[task.object(n).kind])
    for name in order:
        xy = _uniform(name, task, rng)
        if not (_inside(xy, name, task) and _apart(name, xy, placed, task, layout.min_gap)):
            return None
        placed[name] = xy
    for first, second in layout.pairs:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        xy = placed[second] + rng.uniform(*layout.near) * np.array([np.cos(angle), np.sin(angle)])
        others = [b for a, b in layout.pairs if b != second]
        clear = all(np.linalg.norm(xy - placed[b]) >= layout.near[1] + SPATIAL_MARGIN
                    for b in others)
        if not (clear and _inside(xy, first, task)
                and _apart(first, xy, {n: p for n, p in placed.items() if n != second}, task,
                           layout.min_gap)):
            return None
        placed[first] = xy
    if layout.side_gap:
        a, b = layout.side_gap
        if abs(placed[a][1] - placed[b][1]) < SIDE_GAP:
            return None
    return placed


def sample_layout(task: "TabletopTask", rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Table-centred (x, y) of every object of ``task``, drawn from ``rng`` by its layout's
    rule (rejection sampling); RuntimeError if no layout fits in _TRIES draws."""
    for _ in range(_TRIES):
        placed = _try_layout(task, rng)
        if placed is not None:
            return placed
    raise RuntimeError(f"{task.name}: no layout found in {_TRIES} draws")
