"""Pure selection functions on known inputs."""
import math

import numpy as np
import torch

from specprune.prune.frame_compare import (FramePatches, changed_mask, frame_similarity,
                                           not_static_mask)
from specprune.prune.selection import (even_grid, keep_highest, rank_weights,
                                       round_up_to_bucket, topk_per_view)


def patch_similarity(current, previous, patch):
    return frame_similarity(FramePatches(current, patch), FramePatches(previous, patch))


def test_one_changed_patch_is_found():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8))
    b = a.clone()
    b[14 * 3:14 * 4, 14 * 5:14 * 6] = 255 - b[14 * 3:14 * 4, 14 * 5:14 * 6]
    sim = patch_similarity(b, a, 14)
    assert sim.shape == (256,)
    idx = changed_mask(sim[None], k=20, static_threshold=0.986).nonzero().squeeze(1)
    assert idx.tolist() == [3 * 16 + 5]


def test_identical_frames_have_no_dynamic_patches():
    a = torch.full((224, 224, 3), 100, dtype=torch.uint8)
    assert changed_mask(patch_similarity(a, a, 14)[None], 20, 0.986).sum() == 0


def test_topk_per_view_ranks_views_separately():
    scores = torch.tensor([0.1, 0.9, 0.5, -math.inf, 5.0, 4.0, 3.0, 2.0])
    mask = topk_per_view(scores, 4, [2, 1])
    assert mask.nonzero().squeeze(1).tolist() == [1, 2, 4]


def test_topk_skips_absent_tokens():
    scores = torch.tensor([1.0, -math.inf, -math.inf, -math.inf])
    assert topk_per_view(scores, 4, [3]).sum() == 1


def test_topk_per_view_with_an_empty_view_and_k_past_the_view():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7, 5.0, -math.inf, 3.0, 2.0])
    assert topk_per_view(scores, 4, [0, 9]).nonzero().squeeze(1).tolist() == [4, 6, 7]
    assert topk_per_view(scores, 4, [0, 0]).sum() == 0


def test_even_grid_spreads_each_views_count_over_the_whole_view():
    mask = even_grid(16, (4, 0, 20), torch.device("cpu")).view(3, 16)
    assert mask[0].nonzero().squeeze(1).tolist() == [0, 5, 10, 15]  # both ends, even gaps
    assert mask[1].sum() == 0 and mask[2].all()  # none; more than the view: all of it
    rows = even_grid(256, (64,), torch.device("cpu")).view(16, 16)
    assert rows.sum() == 64 and (rows.sum(1) == 4).all()  # every row of patches has its 4


def test_stacked_views_find_the_patches_each_view_finds_alone():
    """The policy compares every view of two frames at once: the same patches as view by
    view, numbered view after view."""
    rng = np.random.default_rng(1)
    now = torch.from_numpy(rng.integers(0, 255, (2, 224, 224, 3), dtype=np.uint8))
    before = now.clone()
    before[0, :28, :42] = 0  # view 0: patches (0..1, 0..2) changed
    before[1, 100:140, 14 * 7:14 * 8] = 255 - before[1, 100:140, 14 * 7:14 * 8]
    sim = frame_similarity(FramePatches(now, 14), FramePatches(before, 14))
    assert sim.shape == (2, 256)
    alone = [patch_similarity(now[v], before[v], 14) for v in range(2)]
    torch.testing.assert_close(sim, torch.stack(alone))
    for k in (0, 3, 20):
        want = sorted(int(i) + 256 * v for v in range(2)
                      for i in changed_mask(alone[v][None], k, 0.986).nonzero().squeeze(1))
        assert changed_mask(sim, k, 0.986).nonzero().squeeze(1).tolist() == want
    assert want == [0, 1, 2, 16, 17, 18, 256 + 7 * 16 + 7, 256 + 8 * 16 + 7, 256 + 9 * 16 + 7]


def test_bucket_rounds_up_with_next_best():
    mask = torch.tensor([True, False, False, False, True, False, False, False])
    ranking = torch.tensor([9.0, 1.0, 8.0, 2.0, 7.0, 3.0, -math.inf, 6.0])
    out = round_up_to_bucket(mask, ranking, 4)
    assert out.nonzero().squeeze(1).tolist() == [0, 2, 4, 7]


def test_layer_drop_respects_ratio_and_floor():
    ema = torch.tensor([5.0, 0.0, 9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0])
    kept = keep_highest(ema, 0.2, floor=0)
    assert kept.tolist() == [0, 2, 4, 5, 6, 7, 8, 9]  # the two lowest dropped, order kept
    assert keep_highest(ema, 0.5, floor=9).tolist() == [0, 2, 3, 4, 5, 6, 7, 8, 9]
    assert keep_highest(ema, 0.05, floor=0) is None  # floor(0.5) tokens: nothing dropped


def test_rank_weights_favour_top_and_sum_to_one():
    w = rank_weights(torch.tensor([0.1, 0.5, 0.3]), 8.0)
    assert math.isclose(float(w.sum()), 1.0, rel_tol=1e-5)
    assert w[1] > w[2] > w[0]
    # rank r of n gets sigmoid(-k (r / (n - 1) - 1/2)), normalised
    ref = 1 / (1 + np.exp(8.0 * (np.array([2, 0, 1]) / 2 - 0.5)))
    np.testing.assert_allclose(w.numpy(), ref / ref.sum(), rtol=1e-6)


def test_not_static_is_everything_but_the_most_similar_above_the_threshold():
    sim = torch.tensor([[0.999, 0.990, 0.5, 0.9999], [0.2, 0.3, 0.995, 0.1]])
    # view 0: the 2 most similar (3, 0) are static; view 1: only 2 is at or above 0.986
    assert not_static_mask(sim, 2, 0.986).nonzero().squeeze(1).tolist() == [1, 2, 4, 5, 7]
    assert not_static_mask(sim, 0, 0.986).all()
    assert not_static_mask(sim, 9, 0.986).nonzero().squeeze(1).tolist() == [2, 4, 5, 7]
