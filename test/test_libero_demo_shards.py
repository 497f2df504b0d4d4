"""Resumable LIBERO demo recording: shards, their seed blocks, skipping what is complete
(the recorder itself is stubbed here; test_libero_experts records a real demo)."""
import os

from specprune_ros.sim import demo_shards, libero_demos
from specprune_ros.sim.demos import NoiseConfig


class Stopped(Exception):
    """Stands for the SIGTERM / session end that stops a recording."""


def test_shards_resume_where_the_recording_stopped(tmp_path, monkeypatch):
    calls, stop_at = [], [3]

    def fake_record(out, suite, tasks, count, seed, noise, camera_size, log, max_tries,
                    frame_every):
        calls.append((os.path.basename(out), tasks, count, seed, max_tries))
        with open(out, "w") as f:
            f.write("demos")
        if len(calls) == stop_at[0]:
            raise Stopped  # stopped while the third shard records

    monkeypatch.setattr(libero_demos, "record", fake_record)
    args = (str(tmp_path), "libero_spatial", [0, 2], 25, 10000, 10, NoiseConfig())
    try:
        libero_demos.record_shards(*args, log=lambda line: None)
    except Stopped:
        pass
    assert [c[:4] for c in calls] == [
        ("libero_spatial_task00_part00.hdf5.partial", [0], 10, 10000),
        ("libero_spatial_task00_part01.hdf5.partial", [0], 10, 11000),
        ("libero_spatial_task00_part02.hdf5.partial", [0], 5, 12000)]
    assert sorted(os.listdir(tmp_path)) == [
        "libero_spatial_task00_part00.hdf5", "libero_spatial_task00_part01.hdf5",
        "libero_spatial_task00_part02.hdf5.partial"]
    calls.clear()
    stop_at[0] = 0
    paths = libero_demos.record_shards(*args, log=lambda line: None)
    # the stopped shard again from its own seeds, then task 2 (seeds 20000 + 1000 k)
    assert [c[3] for c in calls] == [12000, 30000, 31000, 32000]
    assert all(c[4] == demo_shards.SHARD_SEEDS_PER_PART for c in calls)
    assert len(paths) == 6 and all(os.path.exists(p) for p in paths)


def test_shared_scenes_give_every_task_the_same_seed_blocks(tmp_path):
    """--shared-scenes: shard k of every task tries task 0's block, so tasks whose scene
    follows from the seed record the same scenes (without it each task has its own)."""
    def blocks(shared):
        seen = []

        def record_one(partial, task, count, first):
            seen.append((task, first))
            open(partial, "w").close()

        out = tmp_path / ("shared" if shared else "own")
        demo_shards.record_in_shards(str(out), "sim_spatial", [0, 1], 20, 80000, 10,
                                     record_one, log=lambda line: None, shared_scenes=shared)
        return seen

    assert blocks(True) == [(0, 80000), (0, 81000), (1, 80000), (1, 81000)]
    assert blocks(False) == [(0, 80000), (0, 81000), (1, 90000), (1, 91000)]
