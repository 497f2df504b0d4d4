"""scripts/train_libero.sh end to end on small synthetic shards with the tiny preset: a run
stopped and resumed gives the weights of one uninterrupted run, the headline recipe has no
attention loss, and the script refuses unfinished shards and changed demo files."""
import os
import subprocess

import h5py
import pytest
import torch
from safetensors.torch import load_file

from libero_demo_helpers import OBJECT, SPATIAL, write_shard

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "train_libero.sh")


@pytest.fixture
def demos(tmp_path):
    folder = tmp_path / "demos"
    folder.mkdir()
    write_shard(folder / "libero_object_task00_part00.hdf5", OBJECT, (12, 11), seed=5)
    write_shard(folder / "libero_spatial_task00_part00.hdf5", SPATIAL, (10, 13), seed=7)
    return folder


def _script(demos, run, **env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("STOP_STEP", "MINUTES", "ALLOW_PARTIAL")}
    full.update(DEMOS=str(demos), RUN=str(run), PRESET="tiny", STEPS="4", VAL_DEMOS="1",
                THREADS="1", **env)
    return subprocess.run(["bash", SCRIPT, "--batch-size", "4", "--warmup-steps", "2",
                           "--log-every", "1"], env=full, cwd=REPO, capture_output=True,
                          text=True, timeout=900)


def _weights(run):
    return load_file(os.path.join(run, "checkpoint", "model.safetensors"))


@pytest.mark.skipif(not os.path.exists(os.path.join(REPO, ".venv", "bin", "python")),
                    reason="the script runs the project's .venv (scripts/setup.sh)")
def test_a_stopped_and_resumed_run_gives_the_weights_of_one_run(demos, tmp_path):
    one = _script(demos, tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    assert "--aux-attention" not in one.stderr and "--aux-target 0.3" in one.stderr
    first = _script(demos, tmp_path / "two", STOP_STEP="2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "stop step 2 reached" in first.stdout
    second = _script(demos, tmp_path / "two")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "--resume" in second.stderr and "at step 2/4" in second.stdout
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    # resuming on other demo files (a shard added since) is refused with the reason
    write_shard(demos / "libero_object_task01_part00.hdf5", OBJECT, (9,), seed=9)
    changed = _script(demos, tmp_path / "two")
    assert changed.returncode != 0
    assert "trained on other demo files" in changed.stderr
    assert "libero_object_task01_part00.hdf5" in changed.stderr
    # and on a file whose values changed in place (its size did not)
    (demos / "libero_object_task01_part00.hdf5").unlink()
    shard = sorted(demos.glob("*.hdf5"))[0]
    size = shard.stat().st_size
    with h5py.File(shard, "r+") as f:
        f["data/demo_0/actions"][0, 0] += 0.5
    assert shard.stat().st_size == size
    changed = _script(demos, tmp_path / "two")
    assert changed.returncode != 0 and "trained on other demo files" in changed.stderr
    assert shard.name in changed.stderr


def test_the_script_refuses_shards_still_being_recorded(demos, tmp_path):
    (demos / "libero_object_task00_part01.hdf5.partial").write_bytes(b"")
    refused = _script(demos, tmp_path / "p")
    assert refused.returncode == 2 and "unfinished shard" in refused.stderr
    assert not (tmp_path / "p").exists()


def test_pipeline_refuses_an_unknown_stage_before_running_any():
    """scripts/libero_pipeline.sh runs the stages it is given in order; a misspelt one is
    refused with the list of stages."""
    script = os.path.join(REPO, "scripts", "libero_pipeline.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    out = subprocess.run(["bash", script, "trian"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert ("unknown stage trian (record, train, keep, evaluate, ros, table, attention, "
            "token_drop, takeover, contrast, claim)" in out.stderr)
