"""Token-drop augmentation (train/token_drop.py): which steps drop, what a drop step's pass
computes, what the auxiliary losses read after a drop, and that a run stays resumable."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_training_recipe import RECIPE, cube_demos, tiny  # noqa: F401 (fixture)
from specprune.model.modeling_vla import OpenVLAOFT
from specprune.model.presets import preset_config
from specprune.prune.baselines import RandomDropHook
from specprune.prune.decoder import run_decoder
from specprune.prune.pruning_hooks import ScoreProbe
from specprune.prune.selection import topk_per_view
from specprune.model.prompting import encode_prompt
from specprune.model.tiny_tokenizer import build_tokenizer, empty_token_id
from specprune.train.auxiliary import AuxiliaryHeads, AuxLabels, AuxWeights
from specprune.train.batches import Batch
from specprune.train.optimisation import forward
from specprune.train.token_drop import ScoredDropHook, TokenDrop
from specprune.train.train_config import TrainConfig
from specprune.train.training import train


def test_the_draws_follow_the_settings_and_depend_on_seed_and_step_only():
    drop = TokenDrop(probability=0.3, keep_min=0.25, layers=(2, 5), seed=7)
    draws = [drop.draw(step, 512) for step in range(3000)]
    assert draws == [drop.draw(step, 512) for step in range(3000)]  # no hidden state
    taken = [d for d in draws if d is not None]
    assert 0.27 < len(taken) / len(draws) < 0.33
    assert {d.layer for d in taken} == {2, 5} and not any(d.scored for d in taken)
    counts = np.array([d.budget for d in taken])
    assert counts.min() >= round(0.25 * 512) and counts.max() <= 512
    assert abs(counts.mean() - 0.625 * 512) < 10  # uniform share in [0.25, 1]
    other = TokenDrop(probability=0.3, keep_min=0.25, layers=(2, 5), seed=8)
    assert [other.draw(step, 512) for step in range(50)] != draws[:50]
    assert all(TokenDrop(0.0).draw(step, 512) is None for step in range(100))
    mixed = [TokenDrop(1.0, scored=0.25, seed=7).draw(step, 512) for step in range(2000)]
    assert 0.22 < np.mean([d.scored for d in mixed]) < 0.28


def _tiny_model_and_batch(batch_size=2):
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    model = OpenVLAOFT(preset_config("tiny", len(tokenizer), empty_token_id(tokenizer))).eval()
    prompt = encode_prompt(tokenizer, "pick up the red cube", model.cfg.empty_token_id)
    ids = torch.tensor([prompt.ids] * batch_size)
    size = model.cfg.image_size
    batch = Batch(pixels=torch.randn(batch_size, 6 * model.cfg.num_images, size, size),
                  proprio=torch.randn(batch_size, model.cfg.proprio_dim), ids=ids,
                  prompt=prompt,
                  target=torch.zeros(batch_size, model.cfg.chunk, model.cfg.action_dim))
    return model, batch


@torch.no_grad()
def test_a_drop_step_runs_the_pass_random_dropping_runs_at_inference():
    model, batch = _tiny_model_and_batch()
    layout = model.layout(len(batch.prompt.ids), batch.prompt.task_ids)
    drop = TokenDrop(probability=1.0, keep_min=0.2, layers=(1, 2), seed=3)
    step = 11
    layer, budget, words, _ = dataclasses.astuple(drop.draw(step, layout.num_visual))
    assert budget < layout.num_visual
    got = forward(model, batch, drop=drop, step=step).actions
    # the same pass, its head states found by their original positions
    embeds = model.build_sequence(model.encode_images(batch.pixels), batch.proprio, batch.ids)
    state = run_decoder(model.decoder, embeds, RandomDropHook(layout, layer, budget, words))
    assert state.tokens_per_layer[layer] == layout.length - layout.num_visual + budget
    heads = torch.arange(layout.head_start, layout.head_start + layout.num_head_positions)
    want = model.predict_normalized(state.hidden[:, state.index_of(heads)])
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    unpruned = forward(model, batch).actions
    assert (got - unpruned).abs().max() > 1e-4  # the drop changed the actions
    # keeping every token is the unpruned pass
    kept_all = forward(model, batch, drop=TokenDrop(1.0, keep_min=1.0, layers=(1,)), step=step)
    torch.testing.assert_close(kept_all.actions, unpruned, rtol=0, atol=0)


def _dropped_pass(weights, layer, seed, step):
    """A tiny model's pass dropping tokens before ``layer``: model, batch, layout, the
    features and the kept visual ids (as random dropping at inference keeps them)."""
    model, batch = _tiny_model_and_batch()
    layout = model.layout(len(batch.prompt.ids), batch.prompt.task_ids)
    drop = TokenDrop(probability=1.0, keep_min=0.3, layers=(layer,), seed=seed)
    _, budget, words, _ = dataclasses.astuple(drop.draw(step, layout.num_visual))
    feats = forward(model, batch, weights, drop=drop, step=step)
    return model, batch, layout, feats, torch.as_tensor(
        RandomDropHook(layout, layer, budget, words).kept)


@torch.no_grad()
def test_after_a_drop_the_attention_loss_reads_the_tokens_still_present():
    weights = AuxWeights(attention=0.1, attention_layers=(0, -1))
    model, batch, layout, feats, ids = _dropped_pass(weights, layer=2, seed=1, step=4)
    kept = torch.zeros(layout.num_visual, dtype=torch.bool)
    kept[ids] = True
    before, last = feats.text_to_visual[0], feats.text_to_visual[model.num_layers - 1]
    assert before.shape == last.shape == (2, layout.num_visual)
    assert bool((before > 0).all())  # layer 0 runs before the drop: every token
    assert bool((last[:, ~kept] == 0).all()) and bool((last[:, kept] > 0).all())
    # the unpruned pass: the last layer reads every token; layer 0 is the same either way
    plain = forward(model, batch, weights).text_to_visual
    assert bool((plain[model.num_layers - 1] > 0).all())
    torch.testing.assert_close(before, plain[0], rtol=0, atol=0)


@torch.no_grad()
def test_after_a_drop_the_named_head_is_scored_on_the_tokens_still_present():
    weights = AuxWeights(named=0.5, named_layer=2)
    model, _, layout, feats, kept = _dropped_pass(weights, layer=1, seed=2, step=0)
    budget = len(kept)
    assert feats.visual_hidden.shape[:2] == (2, budget)
    assert feats.visual_ids.tolist() == [kept.tolist()]
    heads = AuxiliaryHeads(dim=feats.visual_hidden.shape[-1], num_colours=3,
                           action_dim=model.cfg.action_dim, grid=16, views=2)
    colour = torch.zeros(2, layout.num_visual, dtype=torch.long)
    colour[:, kept[:3]] = 1  # red: three kept patches ...
    colour[:, ~torch.isin(torch.arange(layout.num_visual), kept)] = 1
    labels = AuxLabels(colour=colour, named=torch.tensor([0, 0]), target=torch.zeros(2, 3),
                       target_mask=torch.ones(2, dtype=torch.bool))
    # ... and every dropped one: only the three present ones may count
    logit = heads.named(feats.visual_hidden).squeeze(-1)
    shown = torch.zeros(2, budget)
    shown[:, :3] = 1.0
    want = 0.5 * F.binary_cross_entropy_with_logits(logit, shown, pos_weight=torch.tensor(10.0))
    got = heads.losses(feats, labels, weights)["named"]
    torch.testing.assert_close(got, want)


@torch.no_grad()
def test_a_scored_drop_keeps_in_each_sample_what_specprune_ranks_first():
    model, batch = _tiny_model_and_batch()
    batch.pixels[1] = torch.randn_like(batch.pixels[1])  # two different scenes
    layout = model.layout(len(batch.prompt.ids), batch.prompt.task_ids)
    per_view = 20
    hook = ScoredDropHook(layout, 2, per_view)
    embeds = model.build_sequence(model.encode_images(batch.pixels), batch.proprio, batch.ids)
    state = run_decoder(model.decoder, embeds, hook)
    # the ranking, by hand: Eq. 1 of layers 0 and 1 on the unpruned pass's inputs
    probe = ScoreProbe(layout, (0, 1))
    for b in range(2):
        probe.scores = {}
        run_decoder(model.decoder, embeds[b:b + 1], probe)
        mean = (probe.scores[0] + probe.scores[1]) / 2
        want = topk_per_view(mean, layout.patches_per_view, [per_view] * layout.num_views)
        assert hook.kept[b].tolist() == torch.nonzero(want).squeeze(1).tolist()
    assert hook.kept[0].tolist() != hook.kept[1].tolist()  # per sample
    assert state.tokens_per_layer[2] == layout.length - layout.num_visual + 2 * per_view
    # each sample's actions are those of its own pass with its own tokens kept
    heads = torch.arange(layout.head_start, layout.head_start + layout.num_head_positions)
    for b in range(2):
        keep = torch.zeros(layout.num_visual, dtype=torch.bool)
        keep[hook.kept[b]] = True
        alone = run_decoder(model.decoder, embeds[b:b + 1], _KeepAt(layout, 2, keep))
        mine = state.hidden[b:b + 1, state.positions[b].tolist().index(layout.head_start):]
        torch.testing.assert_close(mine[:, :layout.num_head_positions],
                                   alone.hidden[:, alone.index_of(heads)],
                                   rtol=1e-5, atol=1e-5)
    # and through training's forward: the losses read the kept tokens of each sample
    drop = TokenDrop(1.0, keep_min=0.3, layers=(2,), seed=0, scored=1.0)
    weights = AuxWeights(attention=0.1, attention_layers=(0, -1))
    feats = forward(model, batch, weights, drop=drop, step=0)
    last = feats.text_to_visual[model.num_layers - 1]
    assert bool(((last > 0).sum(1) == (last > 0).sum(1)[0]).all())
    assert (last[0] > 0).tolist() != (last[1] > 0).tolist()
    with pytest.raises(ValueError, match="scores of two layers before it"):
        ScoredDropHook(layout, 1, per_view)


@torch.no_grad()
def test_a_later_scored_drop_ranks_by_the_two_layers_before_it():
    """A drop before layer 3 keeps SpecPrune's V_local with local_first_layer 1: the Eq. 1
    scores of layers 1 and 2 (not 0 and 1)."""
    model, batch = _tiny_model_and_batch()
    layout = model.layout(len(batch.prompt.ids), batch.prompt.task_ids)
    hook = ScoredDropHook(layout, 3, 20)
    embeds = model.build_sequence(model.encode_images(batch.pixels), batch.proprio, batch.ids)
    run_decoder(model.decoder, embeds[:1], hook)
    probe = ScoreProbe(layout, (0, 1, 2))
    run_decoder(model.decoder, embeds[:1], probe)
    ks = [20] * layout.num_views
    later = topk_per_view((probe.scores[1] + probe.scores[2]) / 2, layout.patches_per_view, ks)
    early = topk_per_view((probe.scores[0] + probe.scores[1]) / 2, layout.patches_per_view, ks)
    assert hook.kept[0].tolist() == torch.nonzero(later).squeeze(1).tolist()
    assert later.tolist() != early.tolist()


class _KeepAt(RandomDropHook):
    """Keep a given (V,) mask before one layer (one sample's scored drop, by hand)."""

    def __init__(self, layout, layer, mask):
        super().__init__(layout, layer, int(mask.sum()), (0,))
        self.kept = torch.nonzero(mask).squeeze(1).numpy()


def test_bad_token_drop_settings_are_refused_with_the_reason(cube_demos, tmp_path):  # noqa: F811
    base = dict(demos="d", out="o", steps=1)
    with pytest.raises(ValueError, match="token_drop_layers='two'"):
        TrainConfig(**base, token_drop=0.5, token_drop_layers="two")
    with pytest.raises(ValueError, match="token_drop="):
        TrainConfig(**base, token_drop=1.5)
    assert TrainConfig(**base, token_drop=0.5, token_drop_layers="1,3").token_drop_settings \
        == TokenDrop(0.5, 0.15, (1, 3), 0)
    with pytest.raises(ValueError, match="token_drop_scored needs token_drop_layers >= 2"):
        TrainConfig(**base, token_drop=0.5, token_drop_layers="1,3", token_drop_scored=0.5)
    assert TrainConfig(**base, token_drop=0.5, token_drop_layers="2",
                       token_drop_scored=0.5).token_drop_settings.scored == 0.5
    with pytest.raises(ValueError, match=r"decoder layers \[9\] do not exist"):
        train(tiny(cube_demos, tmp_path / "deep", token_drop=0.5, token_drop_layers="9"),
              log=lambda _: None)


def test_a_token_drop_run_in_two_sittings_equals_one_run(cube_demos, tmp_path):  # noqa: F811
    recipe = dict(RECIPE, token_drop=0.8, token_drop_layers="2,3", token_drop_keep_min=0.3,
                  token_drop_scored=0.5)
    kinds = [TrainConfig(demos="d", out="o", steps=4, **recipe).token_drop_settings.draw(
        step, 512) for step in range(4)]
    assert {d.scored for d in kinds if d} == {True, False}  # both kinds of drop step
    whole = train(tiny(cube_demos, tmp_path / "whole", **recipe), log=lambda _: None)
    plain = train(tiny(cube_demos, tmp_path / "plain", **RECIPE), log=lambda _: None)
    first = train(tiny(cube_demos, tmp_path / "split", sitting_steps=2, **recipe),
                  log=lambda _: None)
    assert first.summary["steps"] == 2
    second = train(tiny(cube_demos, tmp_path / "split", resume=True, **recipe),
                   log=lambda _: None)
    for (name, a), b in zip(whole.model.state_dict().items(),
                            second.model.state_dict().values()):
        assert torch.equal(a, b), name
    # and the drops did change the run (some of its 4 steps drop)
    pairs = zip(whole.model.state_dict().values(), plain.model.state_dict().values())
    assert any(not torch.equal(a, b) for a, b in pairs)


def test_a_state_saved_before_token_drop_existed_resumes(cube_demos, tmp_path):  # noqa: F811
    train(tiny(cube_demos, tmp_path / "old", sitting_steps=1), log=lambda _: None)
    path = tmp_path / "old-state" / "train_state.pt"
    blob = torch.load(str(path), weights_only=False)
    for key in ("token_drop", "token_drop_keep_min", "token_drop_layers", "token_drop_scored"):
        del blob["config"][key]  # as a state written by an older version
    torch.save(blob, str(path))
    lines = []
    resumed = train(tiny(cube_demos, tmp_path / "old", resume=True), log=lines.append)
    assert resumed.summary["steps"] == 4
    train(tiny(cube_demos, tmp_path / "again", sitting_steps=1), log=lambda _: None)
    with pytest.raises(ValueError, match=r"token_drop=0.0 \(now 0.5\)"):
        train(tiny(cube_demos, tmp_path / "again", resume=True, token_drop=0.5),
              log=lambda _: None)


def test_a_scored_drop_step_still_trains_the_layers_it_scores():
    """Scoring runs without a gradient, but the layer input it reads is the one the layer
    then runs with: that input must keep its gradient, or layers 0 and 1 stop learning on
    every scored step."""
    model, batch = _tiny_model_and_batch()
    drop = TokenDrop(1.0, keep_min=0.3, layers=(2,), seed=0, scored=1.0)
    feats = forward(model, batch, AuxWeights(), drop=drop, step=0)
    feats.actions.abs().mean().backward()
    for index in (0, 1):
        grad = model.decoder.layers[index].self_attn.k_proj.weight.grad
        assert grad is not None and float(grad.abs().sum()) > 0, index
