"""The LIBERO-shaped suites' catalogue and layouts (no simulator): every layout rule keeps
its promises over many seeds, and left / right name the cube on that side."""
import itertools

import numpy as np
import pytest

from specprune_ros.sim import tabletop_suites as ts
from specprune_ros.sim.libero_protocol import SUITE_MAX_STEPS

SEEDS = range(200)


def _layouts(task):
    rng = np.random.default_rng(7)
    return [ts.sample_layout(task, rng) for _ in SEEDS]


@pytest.mark.parametrize("name", sorted(ts.TABLETOP_TASKS))
def test_layouts_keep_objects_apart_and_in_their_zones(name):
    task = ts.TABLETOP_TASKS[name]
    zones = {zone: (xs, ys) for zone, xs, ys in task.layout.zones}
    for layout in _layouts(task):
        assert sorted(layout) == sorted(o.name for o in task.objects)
        fixed = task.layout.rule == "fixed"
        for obj, x, y in task.layout.nominal:
            assert np.all(np.abs(layout[obj] - (x, y)) <= task.layout.jitter)
        for obj, xy in ([] if fixed else layout.items()):
            xs, ys = zones.get(obj, (ts.WORKSPACE_X, ts.WORKSPACE_Y))
            assert xs[0] <= xy[0] <= xs[1] and ys[0] <= xy[1] <= ys[1], (obj, xy)
        pairs = {frozenset(p) for p in task.layout.pairs}  # placed `near`, closer than min_gap
        for a, b in itertools.combinations(layout, 2):
            reach = ts.FOOTPRINT[task.object(a).kind] + ts.FOOTPRINT[task.object(b).kind]
            gap = 0.0 if frozenset((a, b)) in pairs or fixed else task.layout.min_gap
            assert np.linalg.norm(layout[a] - layout[b]) >= reach + gap - 1e-9, (a, b)


def test_spatial_layout_puts_each_red_cube_next_to_one_landmark_only():
    task = ts.TABLETOP_TASKS["sim_spatial_0"]
    near, far = task.layout.near[0], task.layout.near[1] + ts.SPATIAL_MARGIN
    for layout in _layouts(task):
        for cube, own, other in (("red_cube_1", "green_cylinder", "blue_cube"),
                                 ("red_cube_2", "blue_cube", "green_cylinder")):
            assert near - 1e-9 <= np.linalg.norm(layout[cube] - layout[own]) \
                <= task.layout.near[1] + 1e-9
            assert np.linalg.norm(layout[cube] - layout[other]) >= far - 1e-9
        assert abs(layout["red_cube_1"][1] - layout["red_cube_2"][1]) >= ts.SIDE_GAP


def test_left_and_right_name_the_cube_on_that_side_and_both_cubes_get_named():
    left, right = ts.TABLETOP_TASKS["sim_spatial_2"], ts.TABLETOP_TASKS["sim_spatial_3"]
    named = set()
    for layout in _layouts(left):
        pos = {n: (xy[0], xy[1], 0.8) for n, xy in layout.items()}
        (_, l_cube, _), = left.resolve(pos)
        (_, r_cube, _), = right.resolve(pos)
        assert {l_cube, r_cube} == {"red_cube_1", "red_cube_2"}
        assert ts.LEFT_SIGN * pos[l_cube][1] > ts.LEFT_SIGN * pos[r_cube][1]
        named.add(l_cube)
    assert named == {"red_cube_1", "red_cube_2"}  # the side is not tied to a landmark
    assert ts.TABLETOP_TASKS["sim_spatial_0"].resolve({}) == (("on", "red_cube_1", "plate"),)


def test_catalogue_shape():
    for suite in ts.SUITES:
        tasks = ts.suite_tasks(suite)
        assert len(tasks) >= 3 and [t.index for t in tasks] == list(range(len(tasks)))
        assert {t.horizon for t in tasks} == {ts.SUITE_HORIZONS[suite]}
        for task in tasks:
            names = [o.name for o in task.objects]
            assert len(set(names)) == len(names)
            for _, obj, target in task.goal:
                assert target in names
                assert obj in names or task.side is not None
    instructions = [t.instruction for t in ts.TABLETOP_TASKS.values()]
    assert len(set(instructions)) == len(instructions)
    assert all(len(t.goal) == 2 for t in ts.suite_tasks("sim_long"))
    assert ts.SUITE_HORIZONS == {"sim_spatial": 220, "sim_object": 280, "sim_goal": 300,
                                 "sim_long": 520}  # openvla-oft's LIBERO step limits
    assert ts.SUITE_HORIZONS == {ours: SUITE_MAX_STEPS[theirs]
                                 for ours, theirs in ts.MODELLED_ON.items()}
    with pytest.raises(ValueError, match="unknown suite 'sim_nothing'"):
        ts.suite_tasks("sim_nothing")
    with pytest.raises(KeyError, match="has no object 'mug'"):
        ts.TABLETOP_TASKS["sim_goal_0"].object("mug")
    assert ts.tabletop_task("pick_color") is None


@pytest.mark.parametrize("fields, reason", [
    (dict(rule="scattered"), "free, pairs or fixed"),
    (dict(rule="pairs"), "pairs go with rule pairs"),
    (dict(rule="free", nominal=(("plate", 0.0, 0.0),)), "nominal positions with rule fixed"),
    (dict(rule="free", near=(0.08, 0.06)), "near"),
    (dict(rule="free", side_gap=("red_cube_1",)), "two objects or none")])
def test_a_malformed_layout_is_refused_with_the_reason(fields, reason):
    with pytest.raises(ValueError, match=reason):
        ts.Layout(**fields)


def test_movable_objects_are_the_graspable_kinds():
    assert ts.TABLETOP_TASKS["sim_goal_0"].movable == ("red_cube", "green_cylinder")
    assert ts.TABLETOP_TASKS["sim_spatial_0"].movable == (
        "red_cube_1", "red_cube_2", "green_cylinder", "blue_cube")
