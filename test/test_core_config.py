"""PruneConfig validation: every bad value is rejected with the field named."""
import dataclasses

import numpy as np
import pytest

from specprune import PruneConfig, field_specs
from specprune.config import layer_roles, resolve_layers

from core_helpers import observation, tiny_policy


def test_defaults_are_valid_and_documented():
    cfg = PruneConfig()
    for name, spec in field_specs().items():
        assert spec["doc"], f"{name} has no documentation"
        assert getattr(cfg, name) == spec["default"]


@pytest.mark.parametrize("change, words", [
    ({"keep_scale": 0.0}, "keep_scale"),
    ({"keep_scale": float("nan")}, "keep_scale"),
    ({"global_k": -1}, "global_k"),
    ({"static_similarity": 1.5}, "static_similarity"),
    ({"local_k_primary_coarse": 2.5}, "local_k_primary_coarse"),
    ({"enabled": 1}, "enabled"),
    ({"lookback_min_steps": 9}, "lookback_min_steps"),
    ({"fine_exit_trans_speed": 0.05}, "hysteresis"),
    ({"layer_prune_layers": (10, 5)}, "layer_prune_layers"),
    ({"layer_prune_layers": (1,)}, "layer_prune_layers"),
    ({"global_score_layers": ("a",)}, "global_score_layers"),
])
def test_invalid_values_raise_naming_the_field(change, words):
    with pytest.raises(ValueError, match=words):
        PruneConfig().updated(**change)


def test_unknown_field_is_rejected():
    with pytest.raises(ValueError, match="unknown PruneConfig field"):
        PruneConfig().updated(no_such_knob=1)


def test_updated_coerces_ints_and_lists():
    cfg = PruneConfig().updated(keep_scale=2, layer_prune_layers=[4, 8])
    assert cfg.keep_scale == 2.0 and cfg.layer_prune_layers == (4, 8)


def test_keep_scale_scales_every_k():
    cfg = PruneConfig(keep_scale=2.0)
    assert cfg.local_k(False, 0) == 32 and cfg.local_k(True, 1) == 38
    assert cfg.scaled(cfg.global_k) == 60


def test_resolve_layers_maps_negative_and_drops_missing():
    assert resolve_layers((14, -1), 32) == (14, 31)
    assert resolve_layers((14, -1), 4) == (3,)
    assert resolve_layers((5, 10, 15, 20), 12) == (5, 10)


def test_layer_depth_keeps_the_papers_relative_depth():
    paper, global_layers = (5, 10, 15, 20), (14, -1)
    assert resolve_layers(paper, 32, 32, 2) == paper  # a 32-layer checkpoint: unchanged
    assert resolve_layers(global_layers, 32, 32) == (14, 31)
    assert resolve_layers(paper, 16, 32, 2) == (3, 5, 8, 10)
    assert resolve_layers(global_layers, 16, 32) == (7, 15)
    assert resolve_layers(paper, 6, 32, 2) == (2, 3, 4)  # 0.94 -> 1 is below layer 2: dropped
    assert resolve_layers(paper, 4, 32, 2) == (2, 3)  # 1.25 and 0.63 -> 1: merged, dropped


def test_layer_depth_makes_layer_pruning_act_on_a_shallow_model():
    counts = {}  # the 4-layer tiny preset
    for depth in (0, 32):
        policy = tiny_policy(PruneConfig(layer_depth=depth, layer_prune_min_visual=0))
        counts[depth] = policy.step(observation(0))[1].visual_tokens_per_layer
    assert counts[0][2] == counts[0][3]  # layers 5..20 do not exist: nothing drops
    assert counts[32][2] < counts[0][2] and counts[32][3] < counts[32][2]


def test_layer_roles_of_a_config_and_a_depth():
    """The paper's layers written for 32 layers on the 16-layer suites' policy; off when
    pruning or layer pruning is off."""
    roles = layer_roles(PruneConfig(layer_depth=32), 16)
    assert roles == {"static": [1, 2], "layer_pruning": [3, 5, 8, 10], "global_scores": [7, 15]}
    assert layer_roles(PruneConfig(layer_depth=32, layer_prune_enabled=False),
                       16)["layer_pruning"] == []
    assert layer_roles(PruneConfig(), 32)["layer_pruning"] == [5, 10, 15, 20]
    assert layer_roles(PruneConfig(enabled=False), 16) == {}


def test_a_later_local_first_layer_keeps_every_token_until_its_selection():
    """local_first_layer=2: layers 0-3 run on every visual token, the static set applies
    from layer 4, layer pruning only after it; the roles say so."""
    cfg = PruneConfig(layer_depth=32, local_first_layer=2)
    assert layer_roles(cfg, 16) == {"static": [3, 4], "layer_pruning": [5, 8, 10],
                                    "global_scores": [7, 15]}
    policy = tiny_policy(PruneConfig(local_first_layer=1, layer_prune_enabled=False))
    for step in range(3):  # the first step keeps every token (no previous frame)
        _, stats = policy.step(observation(step))
    counts = stats.visual_tokens_per_layer
    assert counts[0] == counts[1] == stats.visual_tokens_total
    assert counts[2] < stats.visual_tokens_total  # the candidates
    assert stats.static_layer == 3 and stats.kept_visual_tokens == counts[3] < counts[2]


def test_coverage_k_keeps_an_even_grid_of_every_view_through_the_static_selection():
    """coverage_k (not in the paper): V_cover, coverage_k patches per view at an even
    stride, is in the static set on every step, as V_global is; without it the set misses
    part of that grid."""
    import torch

    from specprune.prune.selection import even_grid

    def static_sets(cfg):
        policy = tiny_policy(cfg)
        for step in range(3):
            _, stats = policy.step(observation(step))
            yield stats
    per_view = None
    for stats in static_sets(PruneConfig(coverage_k=8, keep_scale=0.5)):
        kept = np.concatenate([m.reshape(-1) for m in stats.kept_masks])
        per_view = kept.size // len(stats.kept_masks)
        grid = even_grid(per_view, (4,) * len(stats.kept_masks), torch.device("cpu")).numpy()
        assert stats.n_cover == grid.sum() == 4 * len(stats.kept_masks)  # scaled: 8 * 0.5
        assert kept[grid].all()
    plain = [np.concatenate([m.reshape(-1) for m in s.kept_masks])
             for s in static_sets(PruneConfig(keep_scale=0.5))][1:]  # step 0 keeps all
    assert all(not k[grid].all() for k in plain)


def _hook_pass(cfg, with_cover=True):
    """One decoder pass of the tiny policy on observation 0 under a SpecPruneHook of ``cfg``
    whose V_global and V_dynamic are empty and whose V_cover (``with_cover``) is an even grid
    of 12 per view; (hook, decoder state, layout, that grid)."""
    import torch

    from specprune.prune.decoder import run_decoder
    from specprune.prune.pruning_hooks import SpecPruneHook
    from specprune.prune.selection import even_grid

    policy = tiny_policy()
    prep = policy._prepare(observation(0))
    lay = prep.layout
    cover = even_grid(lay.patches_per_view, (12,) * lay.num_views, torch.device("cpu"))
    none = torch.zeros(lay.num_visual, dtype=torch.bool)
    hook = SpecPruneHook(cfg, lay, policy.model.num_layers, False, none, none,
                         cover if with_cover else None)
    return hook, run_decoder(policy.model.decoder, prep.embeds, hook), lay, cover


def _last_layer_visual(cfg, with_cover=True):
    """(V_cover's token ids, the visual token ids that reached the last layer)."""
    import torch

    _, state, lay, cover = _hook_pass(cfg, with_cover)
    ids = state.positions - lay.visual_start
    survivors = set(ids[(ids >= 0) & (ids < lay.num_visual)].tolist())
    return set(torch.nonzero(cover).squeeze(1).tolist()), survivors


def test_layer_pruning_never_drops_v_cover():
    """Layer pruning drops the lowest-ranked tokens, but never V_cover's: with a 90 % ratio
    and no floor, every V_cover token still reaches the last layer (without V_cover, most of
    that grid is gone)."""
    cfg = PruneConfig(layer_prune_layers=(2, 3), layer_prune_ratio=0.9, layer_prune_min_visual=0)
    grid, with_cover = _last_layer_visual(cfg)
    assert grid <= with_cover
    assert len(grid & _last_layer_visual(cfg, with_cover=False)[1]) < len(grid) / 2


def test_coverage_in_budget_keeps_each_views_count_and_gives_the_grid_its_place():
    """coverage_in_budget: V_cover replaces the set's lowest-ranked tokens instead of adding
    to it. With the final set taken from one layer's scores (refine_after_layer1=False) the
    ranking is the same with and without V_cover, so each view keeps exactly the count it
    keeps without V_cover; every grid token is in it, and it is not plain set + grid."""
    base = PruneConfig(refine_after_layer1=False, layer_prune_enabled=False, bucket_size=0)

    def static_set(cfg, with_cover):
        hook, _, lay, cover = _hook_pass(cfg, with_cover)
        return hook.trace.static_mask, hook._scores[0].full(), lay, cover

    plain, ranking, lay, cover = static_set(base, False)
    held = static_set(dataclasses.replace(base, coverage_in_budget=True), True)[0]
    added = static_set(base, True)[0]
    per_view = lay.patches_per_view
    assert held.view(-1, per_view).sum(1).tolist() == plain.view(-1, per_view).sum(1).tolist()
    assert bool(held[cover].all())
    assert int(added.sum()) > int(held.sum())
    # the grid takes the place of the plain set's lowest-ranked tokens, not its best ones
    assert int((held & plain).sum()) == int(plain.sum()) - int((cover & ~plain).sum())
    compared = 0
    for view in range(lay.num_views):
        part = slice(view * per_view, (view + 1) * per_view)
        stayed = ranking[part][(held & plain & ~cover)[part]]
        gave_way = ranking[part][(plain & ~held)[part]]
        if len(stayed) and len(gave_way):  # a view whose grid fills its count has none stay
            assert float(stayed.min()) >= float(gave_way.max())
            compared += 1
    assert compared  # the ranking was checked on at least one view


def test_layer_pruning_ranks_v_cover_like_any_token_when_not_spared():
    """coverage_spared_by_layer_pruning=False: V_cover is only sure of the static set; layer
    pruning ranks it with every other token, so at a 90 % ratio most of the grid goes (as
    without V_cover), and the floor is layer_prune_min_visual, not V_cover's count."""
    spared = PruneConfig(layer_prune_layers=(2, 3), layer_prune_ratio=0.9,
                         layer_prune_min_visual=0)
    ranked = dataclasses.replace(spared, coverage_spared_by_layer_pruning=False)
    grid, kept_spared = _last_layer_visual(spared)
    kept_ranked = _last_layer_visual(ranked)[1]
    assert grid <= kept_spared
    assert len(grid & kept_ranked) < len(grid) / 2
    assert len(kept_ranked) < len(grid) <= len(kept_spared)
