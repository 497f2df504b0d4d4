"""The projection and frame arithmetic of patch_projection on synthetic numbers: a pinhole
camera, the protocol's flip, resize / shift / centre crop, the patch grid."""
import numpy as np
import pytest

from specprune.train.patch_boxes import box_patch_labels, to_model_frame

from specprune_ros.sim.patch_projection import project_points, protocol_box, upright_to_protocol

#: a 200 x 100 (width x height) camera at (1, 2, 3) looking down the world's -z, image x
#: along world +x, image y (down) along world -y
K = np.array([[50.0, 0, 100], [0, 50.0, 50], [0, 0, 1]])
POSE = np.eye(4)
POSE[:3, :3] = np.diag([1.0, -1.0, -1.0])
POSE[:3, 3] = [1.0, 2.0, 3.0]


def test_a_point_projects_through_the_pinhole_and_one_behind_is_nan():
    points = np.array([[1.0, 2.0, 1.0],     # on the axis, 2 m ahead: the image centre
                       [1.4, 1.6, 1.0],     # +0.4 x, 0.4 down at 2 m: 10 px right, 10 down
                       [1.0, 2.0, 4.0]])    # behind the camera
    xy = project_points(points, K, POSE)
    np.testing.assert_allclose(xy[:2], [[100.0, 50.0], [110.0, 60.0]])
    assert np.all(np.isnan(xy[2]))


def test_the_protocol_frame_is_the_upright_image_mirrored_left_to_right():
    # LIBERO's frames come bottom row first and the protocol rotates them 180 degrees:
    # pixel (x, y) of the upright image is pixel (W - x, y) of what the policy sees
    upright = np.arange(3 * 4).reshape(3, 4)  # (H, W)
    libero = upright[::-1]
    protocol = libero[::-1, ::-1]
    np.testing.assert_array_equal(protocol, upright[:, ::-1])
    # the centre of upright pixel (col 0, row 2) is at (0.5, 2.5); mirrored: col 3
    assert upright_to_protocol(np.array([0.5, 2.5]), 4).tolist() == [3.5, 2.5]
    assert protocol[2, 3] == upright[2, 0]


def test_protocol_box_spans_the_points_in_fractions_of_the_frame():
    points = np.array([[1.0, 2.0, 1.0], [1.4, 1.6, 1.0], [1.0, 2.0, 4.0]])  # one behind
    box = protocol_box(points, K, POSE, (100, 200))
    # upright x 100..110 -> mirrored 90..100 of 200; y 50..60 of 100
    np.testing.assert_allclose(box, [0.45, 0.5, 0.5, 0.6])
    assert np.all(np.isnan(protocol_box(points[2:], K, POSE, (100, 200))))


def test_resize_shift_and_centre_crop_move_a_box_as_the_pixels_move():
    box = np.array([0.5, 0.25, 0.75, 0.5])  # normalised: x 128..192, y 64..128 at 256
    # model size 224: x 112..168, y 56..112; rolled by dy=2, dx=-3; crop top 5 side 213
    out = to_model_frame(box, 224, 5, 213, shift=np.array([2, -3]))
    scale = 224 / 213
    np.testing.assert_allclose(out, [(109 - 5) * scale, (58 - 5) * scale,
                                     (165 - 5) * scale, (114 - 5) * scale])
    # batched: one shift per box row
    many = to_model_frame(np.stack([box, box]), 224, 0, 224, shift=np.array([[0, 0], [1, 1]]))
    np.testing.assert_allclose(many[1] - many[0], [1, 1, 1, 1])


def test_patches_covered_enough_or_holding_the_centre_get_the_box_label():
    # grid 4 on 64 px: 16 px cells. Box 0 covers cells (0,0),(0,1) fully, (1,0),(1,1) a
    # quarter; box 1 is a dot inside cell (3, 2): only the centre rule labels it
    boxes = np.array([[0.0, 0.0, 32.0, 20.0], [40.0, 50.0, 42.0, 52.0]])
    labels = box_patch_labels(boxes, 64, 4, min_cover=0.25).reshape(4, 4)
    expected = np.zeros((4, 4), int)
    expected[0, :2] = 1
    expected[1, :2] = 1  # 4/16 = 0.25 of the cell
    expected[3, 2] = 2
    np.testing.assert_array_equal(labels, expected)
    # stricter cover drops row 1; the centre cell (1, 1) of box 0 (centre 16, 10) is row 0
    strict = box_patch_labels(boxes, 64, 4, min_cover=0.5).reshape(4, 4)
    assert strict[1].tolist() == [0, 0, 0, 0] and strict[3, 2] == 2


def test_overlapping_boxes_go_to_the_first_in_order_and_nan_or_outside_boxes_label_nothing():
    boxes = np.array([[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 64.0, 64.0]])
    labels = box_patch_labels(boxes, 64, 4, 0.25)
    assert labels[0] == 1 and np.all(labels[1:] == 2)
    assert box_patch_labels(boxes, 64, 4, 0.25, order=(1, 0))[0] == 2
    gone = np.array([[np.nan] * 4, [70.0, 70.0, 90.0, 90.0]])
    assert box_patch_labels(gone, 64, 4, 0.25).sum() == 0
    # leading batch dimensions pass through
    batch = box_patch_labels(np.stack([boxes, boxes, boxes]), 64, 4, 0.25)
    assert batch.shape == (3, 16)
    with pytest.raises(ValueError, match="multiple of the patch grid"):
        box_patch_labels(boxes, 60, 7, 0.25)
