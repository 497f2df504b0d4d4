"""LIBERO patch labels against the renderer: the worker's cameras and object extents,
projected by patch_projection into the protocol's frame, land where MuJoCo's segmentation
render of the same state shows the objects (real worker in .venv-libero)."""
import numpy as np
import pytest

from specprune.train.patch_boxes import box_patch_labels

from specprune_ros.sim.libero_demos import object_boxes
from specprune_ros.sim.libero_env import LiberoWorker, libero_python
from specprune_ros.sim.libero_experts import PickPlaceTask
from specprune_ros.sim.libero_primitives import body_of
from specprune_ros.sim.libero_protocol import DUMMY_ACTION, NUM_STEPS_WAIT, flip_180
from specprune_ros.sim.libero_worker import VIEWS

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    libero_python() is None, reason=".venv-libero is not installed (scripts/setup.sh installs "
    "it; SPECPRUNE_SKIP_LIBERO=1 skipped it)")]

SIZE = 128


@pytest.fixture(scope="module")
def scene():
    """libero_object task 0 (alphabet soup into the basket) after the protocol's no-op
    ticks: the frames, cameras, masks and boxes of one state."""
    with LiberoWorker() as worker:
        info = worker.make("libero_object", 0, camera_size=SIZE)
        task = PickPlaceTask.from_goal(info["goal"])
        worker.reset(seed=1000)
        for wait in range(NUM_STEPS_WAIT):
            step = worker.step(DUMMY_ACTION, views=VIEWS if wait == NUM_STEPS_WAIT - 1 else ())
        # the goal names the basket's region; boxes are of bodies, as the recorder keeps them
        names = [body_of(step.obs, name) for name in (task.obj, task.target)]
        assert names == ["alphabet_soup_1", "basket_1"]
        masks = {view: worker.object_masks(view, names) for view in VIEWS}
        cameras = worker.cameras(VIEWS)
        yield {"names": names, "step": step, "masks": masks, "cameras": cameras,
               "boxes": object_boxes(worker, names)}


def _inside(mask, box):
    """Share of the mask's pixels whose centres lie in the box (pixels, 1 px slack)."""
    rows, cols = np.nonzero(mask)
    x, y = cols + 0.5, rows + 0.5
    ok = (x >= box[0] - 1) & (x <= box[2] + 1) & (y >= box[1] - 1) & (y <= box[3] + 1)
    return ok.mean()


def test_cameras_report_the_frame_size_and_a_pose(scene):
    for view in VIEWS:
        cam = scene["cameras"][view]
        assert cam["size"].tolist() == [SIZE, SIZE]
        np.testing.assert_allclose(cam["intrinsics"][:2, 2], [SIZE / 2, SIZE / 2])
        rot = cam["extrinsics"][:3, :3]
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)


def test_projected_boxes_hold_the_pixels_the_renderer_shows_the_objects_on(scene):
    for v, view in enumerate(VIEWS):
        for k, name in enumerate(scene["names"]):
            mask = flip_180(scene["masks"][view][name])  # the protocol's frame
            box = scene["boxes"][v, k] * SIZE
            if mask.sum() < 5:  # not in this view
                continue
            assert _inside(mask, box) > 0.97, (view, name, box)
            if view == "agentview":  # unoccluded from the third-person camera here
                rows, cols = np.nonzero(mask)
                seen = (cols.max() + 1 - cols.min()) * (rows.max() + 1 - rows.min())
                area = (box[2] - box[0]) * (box[3] - box[1])
                assert seen > 0.4 * area, (name, box, seen)
    # both objects are on the table in front of the third-person camera
    for name in scene["names"]:
        assert scene["masks"]["agentview"][name].sum() > 20


def test_a_mirrored_projection_would_miss_the_object(scene):
    # the flip matters: the soup can sits off the centre line, so the box mirrored back
    # (the upright image's coordinates) holds almost none of its pixels
    mask = flip_180(scene["masks"]["agentview"][scene["names"][0]])
    box = scene["boxes"][0, 0] * SIZE
    mirrored = np.array([SIZE - box[2], box[1], SIZE - box[0], box[3]])
    assert _inside(mask, box) > 0.97 and _inside(mask, mirrored) < 0.2


def test_patch_labels_mark_the_patches_the_object_covers(scene):
    # the stored frame's own 16 x 16 grid (no crop): patches with many object pixels are
    # labelled, and the labelled ones hold most of the object's pixels
    # (the object's label wins where the two overlap)
    grid, cell = 16, SIZE // 16
    labels = box_patch_labels(scene["boxes"][0] * SIZE, SIZE, grid, 0.25)  # (P,)
    for k, name in enumerate(scene["names"]):
        mask = flip_180(scene["masks"]["agentview"][name])
        per_patch = mask.reshape(grid, cell, grid, cell).sum(axis=(1, 3)).reshape(-1)
        full = (per_patch >= cell * cell // 2) & (labels != 1 if k else True)
        assert full.any() and np.all(labels[full] == k + 1), name
        held = per_patch[labels == k + 1].sum() / per_patch[(labels != 1) | (k == 0)].sum()
        assert held > 0.8, (name, held)
