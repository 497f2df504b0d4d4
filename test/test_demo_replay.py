"""demo_replay: recorded demonstrations through the policy in each pruning configuration,
open loop, with the baselines at SpecPrune's budget step by step."""
import json

import numpy as np
import pytest

from specprune import PruneConfig, save_checkpoint
from specprune_ros.eval import demo_replay

from core_helpers import tiny_policy
from libero_demo_helpers import SPATIAL, write_shard


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    policy = tiny_policy(PruneConfig(enabled=False), seed=2)
    folder = str(tmp_path_factory.mktemp("ckpt") / "tiny-libero")
    save_checkpoint(folder, policy.model, policy.tokenizer, policy.statistics, step=1)
    return folder


def test_each_demo_is_an_episode_and_the_baselines_keep_specprunes_budget(tmp_path, checkpoint):
    shard = write_shard(tmp_path / "libero_spatial_task00_part00.hdf5", SPATIAL, [21, 13])
    out = tmp_path / "replay.json"
    assert demo_replay.main(["--policy", checkpoint, "--demos", shard, "--threads", "1",
                             "--configs", "unpruned,specprune,no_global,fastv,random",
                             "--set", "prune.keep_scale=3", "--prune", "layer_prune_ratio=0.2",
                             "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    # frames on ticks (seed % 4) + 4k: 6 and 3 of them, every 2nd a policy step
    assert (result["episodes"], result["steps"]) == (2, 3 + 2)
    assert result["prune_defaults"] == {"layer_prune_ratio": 0.2}
    rows = result["configs"]
    assert rows["unpruned"]["action_l1_vs_unpruned"] == 0.0
    assert rows["unpruned"]["kept_visual_tokens_mean"] == 512
    spec = rows["specprune"]
    assert spec["kept_visual_tokens_mean"] < 512 and spec["action_l1_vs_unpruned"] > 0
    assert rows["specprune[keep_scale=3]"]["kept_visual_tokens_mean"] > \
        spec["kept_visual_tokens_mean"]
    for name in ("fastv", "random"):
        assert rows[name]["kept_visual_tokens_mean"] == spec["kept_visual_tokens_mean"]
        assert rows[name]["action_l1_vs_unpruned"] > 0


def test_a_missing_demo_file_is_reported_not_raised(tmp_path, checkpoint, capsys):
    assert demo_replay.main(["--policy", checkpoint, "--demos", str(tmp_path / "none.hdf5")]) == 2
    assert "none.hdf5" in capsys.readouterr().err


def test_object_patch_shares_compare_the_selection_with_a_uniform_subset(tmp_path, checkpoint):
    """Demos with obs/object_boxes: each SpecPrune configuration reports the share of the
    object's / target's patches it kept next to the uniform share at its own count, and so
    do the baselines (their one-shot drop). A whole-frame box makes both shares the kept
    fraction; a target out of view (NaN box) is not reported."""
    nan = float("nan")
    whole = [[[0.0, 0.0, 1.0, 1.0], [nan] * 4]] * 2  # views, (object, target)
    shard = write_shard(tmp_path / "libero_spatial_task00_part00.hdf5", SPATIAL, [21],
                        boxes=whole)
    result = demo_replay.replay_demos(demo_replay.parse_args(
        ["--policy", checkpoint, "--demos", shard, "--threads", "1",
         "--configs", "unpruned,specprune,random"]))
    spec = result["configs"]["specprune"]
    share = spec["kept_visual_tokens_mean"] / 512
    assert spec["object_patches_kept"] == pytest.approx(share)
    assert spec["object_patches_uniform"] == pytest.approx(share)
    assert "target_patches_kept" not in spec
    rand = result["configs"]["random"]  # SpecPrune's count per step: the same share
    assert rand["object_patches_kept"] == pytest.approx(share)
    assert "object_patches_kept" not in result["configs"]["unpruned"]
    assert "object / target patches kept" in demo_replay.format_table(result)
    assert demo_replay.object_shares([], []) is None


def test_the_overlay_draws_each_pruned_configurations_kept_tokens(
        tmp_path, checkpoint, monkeypatch):
    """Boxes over the top-left quarter: a PNG with one row per sampled step and one column
    per configuration that reports its kept tokens (not unpruned)."""
    from specprune_ros.eval import token_maps
    quarter = [[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]] * 2
    shard = write_shard(tmp_path / "libero_spatial_task00_part00.hdf5", SPATIAL, [21, 13],
                        boxes=quarter)
    png = tmp_path / "tokens.png"
    drawn = {}
    real_draw = token_maps.draw

    def spy(path, images, masks, labels, parts):
        drawn.update(rows=len(images), configs=list(masks), parts=tuple(parts))
        real_draw(path, images, masks, labels, parts)

    monkeypatch.setattr(token_maps, "draw", spy)
    assert demo_replay.main(["--policy", checkpoint, "--demos", shard, "--threads", "1",
                             "--configs", "unpruned,specprune,fastv,random",
                             "--overlay", str(png), "--overlay-steps", "3"]) == 0
    assert drawn == {"rows": 3, "configs": ["specprune", "fastv", "random"],
                     "parts": ("object", "target")}
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert demo_replay.main(["--policy", checkpoint, "--demos", shard, "--threads", "1",
                             "--configs", "unpruned", "--overlay", str(png)]) == 2


def test_token_map_shares_and_sampling():
    from specprune_ros.eval.token_maps import kept_share, sample_indices
    labels = np.zeros((2, 4, 4), int)
    labels[0, :2, :2] = 1  # 4 object patches in view 0
    labels[1, 0, 0] = 2  # 1 target patch in view 1
    masks = [np.zeros((4, 4), bool), np.ones((4, 4), bool)]
    masks[0][0, :] = True  # keeps 2 of the object's 4
    assert kept_share(masks, labels, 1) == 0.5
    assert kept_share(masks, labels, 2) == 1.0
    assert np.isnan(kept_share(masks, np.zeros((2, 4, 4), int), 1))
    assert kept_share(masks, labels.reshape(2, 16), 1) == 0.5  # demo_steps' flat labels
    assert sample_indices(10, 4) == [0, 3, 6, 9] and sample_indices(2, 4) == [0, 1]
