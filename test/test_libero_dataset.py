"""Training data from LIBERO demo shards: a folder (several suites / tasks) read as one set,
frames on some ticks only with chunks from every tick, and what the grounded recipe's heads
read on LIBERO's [object, target] pairs. Small synthetic HDF5 files."""
import os

import h5py
import numpy as np
import pytest
import torch

from libero_demo_helpers import OBJECT, SPATIAL, write_shard
from specprune.model.presets import LAYOUTS, preset_config
from specprune.model.tiny_tokenizer import build_tokenizer, empty_token_id
from specprune.train.batches import TrainingData
from specprune.train.demo_dataset import DemoFileError, dataset_statistics, read_demos


@pytest.fixture
def shards(tmp_path):
    folder = tmp_path / "libero"
    folder.mkdir()
    write_shard(folder / "libero_spatial_task00_part00.hdf5", SPATIAL, (10, 9), seed=100)
    write_shard(folder / "libero_object_task03_part00.hdf5", OBJECT, (7,), seed=200)
    write_shard(folder / "libero_object_task03_part01.hdf5.partial", OBJECT, (6,), seed=300)
    return str(folder)


def _read(path, **kw):
    return read_demos(path, chunk=8, action_dim=7, proprio_dim=8, image_size=32, **kw)


def test_a_folder_of_shards_reads_as_one_set_without_unfinished_shards(shards):
    demos = _read(shards)
    # files in name order (object before spatial), the .partial shard left out
    assert demos.names == ["libero_object_task03_part00.hdf5/demo_0",
                           "libero_spatial_task00_part00.hdf5/demo_0",
                           "libero_spatial_task00_part00.hdf5/demo_1"]
    assert demos.instructions == [OBJECT[0], SPATIAL[0], SPATIAL[0]]
    assert demos.cube_names == [OBJECT[1], SPATIAL[1], SPATIAL[1]]
    assert demos.cube_colors is None  # no names every demo shares
    assert set(demos.env_args["files"]) == {os.path.join(shards, n) for n in os.listdir(
        shards) if n.endswith(".hdf5")}
    assert _read(shards, max_demos=2).names == demos.names[:2]
    comma = _read(",".join(sorted(demos.env_args["files"])))
    np.testing.assert_array_equal(comma.frames[0], demos.frames[0])


def test_samples_are_the_frame_ticks_and_chunks_take_every_tick(shards):
    demos = _read(shards)
    # seeds 200 (7 ticks), 100 (10 ticks), 101 (9 ticks); frames every 4th tick from seed % 4
    np.testing.assert_array_equal(demos.frame_index, [0, 4, 0, 4, 8, 1, 5])
    assert len(demos) == 7 and demos.frames[1].shape == (7, 32, 32, 3)
    assert len(demos.actions) == 7 + 10 + 9
    path = os.path.join(shards, "libero_spatial_task00_part00.hdf5")
    with h5py.File(path) as f:
        actions = f["data/demo_1/actions"][()]
        proprio = f["data/demo_1/obs/proprio"][()]
        cube = f["data/demo_1/obs/cube_pos"][()]
        frames = f["data/demo_1/obs/agentview_image"][()]
    chunks = demos.target_chunks(np.arange(len(demos)))
    np.testing.assert_array_equal(chunks[5], actions[1:9])  # tick 1: ticks 1..8
    np.testing.assert_array_equal(chunks[6], actions[[5, 6, 7, 8, 8, 8, 8, 8]])  # clamped
    np.testing.assert_array_equal(demos.proprio[5:], proprio[[1, 5]])
    np.testing.assert_array_equal(demos.cube_pos[5:], cube[[1, 5]])
    np.testing.assert_array_equal(demos.frames[0][5:], frames)
    stats = dataset_statistics(demos, demos.samples_of([2]), [True] * 6 + [False])
    assert stats["action"]["max"] == actions[[1, 5]].max(0).tolist()  # the sampled ticks


def test_frame_ticks_that_do_not_match_the_frames_are_refused(tmp_path):
    bad = write_shard(tmp_path / "bad.hdf5", SPATIAL, (6,), frame_ticks=[0, 3, 3])
    with pytest.raises(DemoFileError, match="frame_ticks: expected increasing"):
        _read(bad)
    late = write_shard(tmp_path / "late.hdf5", SPATIAL, (6,), frame_ticks=[0, 6])
    with pytest.raises(DemoFileError, match=r"frame_ticks: expected .* in \[0, 6\)"):
        _read(late)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no"):
        _read(str(tmp_path / "empty"))


def _data(demos):
    tok = build_tokenizer()
    cfg = preset_config("tiny", len(tok), empty_token_id(tok))
    lay = LAYOUTS["libero"]
    stats = dataset_statistics(demos, np.arange(len(demos)), [True] * 6 + [False])
    return TrainingData(demos, stats, cfg, lay, tok), cfg


def test_the_target_head_points_at_the_object_until_the_grasp_then_at_the_target(tmp_path):
    # the grasp (first close label) at tick 6: frames on ticks 1, 5 show the object, 9 the
    # target; a close label on a tick without frames counts too
    path = write_shard(tmp_path / "s.hdf5", SPATIAL, (12,), close_at=6, seed=1)
    demos = _read(path)
    np.testing.assert_array_equal(demos.frame_index, [1, 5, 9])
    data, cfg = _data(demos)
    data.enable_aux(10, 10.0, need_cubes=True, grid=2, need_colours=False)
    samples = [0, 1, 2]
    labels = data.aux_labels(samples, torch.zeros(3, 6 * cfg.num_images, 32, 32))
    goal = demos.cube_pos[[0, 1, 2], [0, 0, 1]]  # object, object, target
    expected = (goal - demos.proprio[:, :3]) * 10.0
    np.testing.assert_allclose(labels.target.numpy(), expected, rtol=1e-6)
    assert labels.target_mask.tolist() == [True, True, False]
    assert int(labels.colour.abs().sum()) == 0  # no patch labels for LIBERO's objects


def _two_parts(path, part):
    """Give demo 0 of the shard a second part from tick 10: open again, closing at 14."""
    with h5py.File(path, "r+") as f:
        demo = f["data/demo_0"]
        actions = demo["actions"][()]
        actions[:, 6] = np.where((np.arange(20) >= 6) & (np.arange(20) < 10)
                                 | (np.arange(20) >= 14), 1.0, -1.0)
        demo["actions"][...] = actions
        demo.create_dataset("obs/part", data=np.asarray(part, np.int32))


def test_each_part_of_a_two_part_demo_points_the_target_head_at_its_own_object(tmp_path):
    # frames on ticks 1, 5, 9, 13, 17; part 1 from tick 10 grasps at 14: 13 shows its object
    path = write_shard(tmp_path / "s.hdf5", SPATIAL, (20,), close_at=6, seed=1)
    _two_parts(path, (np.arange(20) >= 10).astype(int))
    demos = _read(path)
    np.testing.assert_array_equal(demos.frame_index, [1, 5, 9, 13, 17])
    assert demos.action_part.tolist() == [0] * 10 + [1] * 10
    data, cfg = _data(demos)
    data.enable_aux(10, 10.0, need_cubes=True, grid=2, need_colours=False)
    labels = data.aux_labels(range(5), torch.zeros(5, 6 * cfg.num_images, 32, 32))
    goal = demos.cube_pos[range(5), [0, 0, 1, 0, 1]]  # object, object, target; object, target
    np.testing.assert_allclose(labels.target.numpy(), (goal - demos.proprio[:, :3]) * 10.0,
                               rtol=1e-6)


@pytest.mark.parametrize("part", [[0] * 10 + [1] * 5 + [0] * 5, [0] * 19, [-1] * 20])
def test_a_malformed_part_index_is_refused(tmp_path, part):
    path = write_shard(tmp_path / "s.hdf5", SPATIAL, (20,), close_at=6, seed=1)
    _two_parts(path, part)
    with pytest.raises(DemoFileError, match="obs/part"):
        _read(path)


def test_colour_heads_on_libero_objects_are_refused_with_the_reason(shards):
    data, _ = _data(_read(shards))
    with pytest.raises(ValueError, match="no pixel rule finds: use the position and target"):
        data.enable_aux(10, 10.0, need_cubes=True, grid=2, need_colours=True)


#: obs/object_boxes of every frame: (views, [object, target], x0 y0 x1 y1 of the frame);
#: the wrist view does not see the object
BOXES = [[[0.0, 0.0, 0.4, 0.4], [0.6, 0.6, 1.0, 1.0]],
         [[np.nan] * 4, [0.0, 0.6, 0.4, 1.0]]]


def test_object_boxes_give_the_named_head_its_patches_and_follow_the_shift(tmp_path):
    path = write_shard(tmp_path / "s.hdf5", SPATIAL, (12, 9), seed=1, boxes=BOXES)
    demos = _read(path)
    assert demos.object_boxes.shape == (len(demos), 2, 2, 4) and demos.boxes_missing == 0
    data, cfg = _data(demos)
    data.enable_aux(10, 10.0, need_cubes=True, grid=2, need_colours=True)
    pixels = torch.zeros(2, 6 * cfg.num_images, 32, 32)
    labels = data.aux_labels([0, 3], pixels)
    # grid 2 of the 224 px input: object top-left, target bottom-right (third person),
    # target bottom-left (wrist); the named cube of a LIBERO pair is its object (label 1)
    assert labels.colour.tolist() == [[1, 0, 0, 2, 0, 0, 2, 0]] * 2
    assert labels.named.tolist() == [0, 0]
    # the third-person frame rolled 30 px right: the object now reaches the right cell
    shifts = np.array([[[0, 30], [0, 0]], [[0, 0], [0, 0]]])
    moved = data.aux_labels([0, 3], pixels, shifts)
    assert moved.colour[0].tolist() == [1, 1, 0, 2, 0, 0, 2, 0]
    assert moved.colour[1].tolist() == labels.colour[1].tolist()


def test_the_named_head_is_refused_with_the_reason_when_a_shard_lacks_object_boxes(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_shard(folder / "libero_spatial_task00_part00.hdf5", SPATIAL, (10, 9), seed=1,
                boxes=BOXES)
    write_shard(folder / "libero_spatial_task00_part01.hdf5", SPATIAL, (10,), seed=5)
    demos = _read(str(folder))
    assert demos.object_boxes is None and demos.boxes_missing == 1
    data, _ = _data(demos)
    with pytest.raises(ValueError, match=r"obs/object_boxes in every demo \(1 of 3 lack it"):
        data.enable_aux(10, 10.0, need_cubes=True, grid=2, need_colours=True)
    data.enable_aux(10, 10.0, need_cubes=True, grid=2, need_colours=False)  # the others run


def test_object_boxes_of_the_wrong_shape_are_refused(tmp_path):
    path = write_shard(tmp_path / "s.hdf5", SPATIAL, (12,), seed=1, boxes=BOXES[:1])
    with pytest.raises(DemoFileError, match="obs/object_boxes: expected"):
        _read(path)


def test_a_batch_with_augmentation_labels_the_rolled_boxes(tmp_path):
    from specprune.train.batches import Augment
    from specprune.train.train_config import TrainConfig

    path = write_shard(tmp_path / "s.hdf5", SPATIAL, (12,), seed=1, boxes=BOXES)
    data, cfg = _data(_read(path))
    data.enable_aux(10, 10.0, need_cubes=True, grid=2, need_colours=True)
    augment = Augment(TrainConfig(demos="d", out="o", steps=1, shift_pixels=5), cfg,
                      np.random.default_rng(0))
    batch = data.batch([0, 1], augment)
    shifts = np.array(augment.shifts[-4:]).reshape(2, 2, 2)
    expected = data.aux_labels([0, 1], batch.pixels, shifts)
    assert batch.aux.colour.tolist() == expected.colour.tolist()
    assert batch.aux.colour[:, 0].tolist() == [1, 1]
