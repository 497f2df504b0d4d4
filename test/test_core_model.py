"""The layer-by-layer decoder against an independent eager implementation."""
import math

import pytest
import torch

from specprune import PruneConfig
from specprune.config import resolve_layers
from specprune.prune.decoder import DecoderState, run_decoder
from specprune.prune.layer_forward import QueryRope, apply_rope, forward_layer, layer_input
from specprune.prune.pruning_hooks import ScoreProbe
from specprune.prune.scoring import batched_query_attention, column_scores

from core_helpers import KEEP_ALL, observation, tiny_policy

pytestmark = pytest.mark.numeric  # rerun under other CPU kernels (scripts/test.sh)


def eager_layer(layer, h, cos, sin):
    """A plain bidirectional Llama layer written out by hand: (1, T, D) -> (1, T, D)."""
    attn = layer.self_attn
    hd = attn.head_dim

    def rms(norm, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return norm.weight * x * torch.rsqrt(var + norm.variance_epsilon)

    def rope(x):
        half = hd // 2
        rot = torch.cat((-x[..., half:], x[..., :half]), -1)
        return x * cos[0] + rot * sin[0]

    x = rms(layer.input_layernorm, h[0])
    t = x.shape[0]
    q = rope(attn.q_proj(x).view(t, -1, hd).transpose(0, 1))
    k = rope(attn.k_proj(x).view(t, -1, hd).transpose(0, 1))
    v = attn.v_proj(x).view(t, -1, hd).transpose(0, 1)
    p = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd), -1)
    h = h[0] + attn.o_proj((p @ v).transpose(0, 1).reshape(t, -1))
    m = layer.mlp
    y = rms(layer.post_attention_layernorm, h)
    return (h + m.down_proj(torch.nn.functional.silu(m.gate_proj(y)) * m.up_proj(y)))[None], p


def prepared():
    policy = tiny_policy(PruneConfig(enabled=False))
    return policy, policy._prepare(observation())


def decoder_inputs():
    """The decoder, the prepared observation, every position and their RoPE cos / sin."""
    policy, prep = prepared()
    dec = policy.model.decoder
    pos = torch.arange(prep.embeds.shape[1])
    cos, sin = dec.rotary_emb(prep.embeds, pos[None])
    return dec, prep, pos, cos, sin


@torch.inference_mode()
def test_unpruned_decoder_matches_eager_bidirectional_reference():
    dec, prep, _, cos, sin = decoder_inputs()
    out = run_decoder(dec, prep.embeds).hidden
    h = prep.embeds
    for layer in dec.layers:
        h, _ = eager_layer(layer, h, cos, sin)
    torch.testing.assert_close(out, dec.norm(h), rtol=1e-4, atol=1e-4)


@torch.inference_mode()
def test_query_rows_equal_rows_of_the_full_attention_map():
    dec, prep, pos, cos, sin = decoder_inputs()
    queries = torch.tensor(prep.layout.query_positions)
    rows = batched_query_attention(dec.layers[0], prep.embeds, cos, sin, queries)[0]
    _, full = eager_layer(dec.layers[0], prep.embeds, cos, sin)
    torch.testing.assert_close(rows, full[:, queries], rtol=1e-4, atol=1e-5)


@torch.inference_mode()
def test_batched_query_rows_and_scores_equal_each_sample_alone():
    """Training's attention loss reads a batch through batched_query_attention and
    column_scores: each sample's row must be what the pruned pass computes for it alone."""
    policy, prep = prepared()
    dec = policy.model.decoder
    other = prep.embeds + 0.1 * torch.randn_like(prep.embeds)
    batch = torch.cat([prep.embeds, other])
    pos = torch.arange(batch.shape[1])[None]
    cos, sin = dec.rotary_emb(batch, pos)
    queries = torch.tensor(prep.layout.query_positions)
    visual = torch.arange(prep.layout.visual_start,
                          prep.layout.visual_start + prep.layout.num_visual)
    rows = batched_query_attention(dec.layers[0], batch, cos, sin, queries)  # shared RoPE
    scores = column_scores(rows, visual)  # (2, visual)
    for i, embeds in enumerate((prep.embeds, other)):
        alone = batched_query_attention(dec.layers[0], embeds, cos, sin, queries)[0]
        torch.testing.assert_close(rows[i], alone, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(scores[i], column_scores(alone, visual))
    assert not torch.allclose(scores[0], scores[1])


@torch.inference_mode()
def test_pruned_tokens_keep_their_original_rope_positions():
    dec, prep, pos, cos, sin = decoder_inputs()
    state = DecoderState(prep.embeds, pos, cos, sin)
    keep = torch.tensor([0, 5, 9, 300, 500])
    state.select(keep)
    ref_cos, ref_sin = dec.rotary_emb(prep.embeds, keep[None])
    torch.testing.assert_close(state.cos, ref_cos)
    torch.testing.assert_close(state.sin, ref_sin)
    assert state.index_of(torch.tensor([300])).item() == 3


def test_keep_all_pruning_gives_the_unpruned_actions():
    base = tiny_policy(PruneConfig(enabled=False))
    keep_all = tiny_policy(KEEP_ALL)
    for step in range(3):
        a, _ = base.step(observation(step))
        b, stats = keep_all.step(observation(step))
        assert stats.kept_visual_tokens == 512
        torch.testing.assert_close(torch.tensor(b.actions), torch.tensor(a.actions),
                                   rtol=1e-5, atol=1e-5)


def test_head_reads_the_reference_positions():
    policy, prep = prepared()
    lay = prep.layout
    prompt = policy._prompt("pick up the red cube")
    num_patches = 2 * 256 + 1  # + proprio token
    num_prompt_tokens = len(prompt.ids) - 1  # the reference's NUM_PROMPT_TOKENS
    assert lay.head_start == num_patches + num_prompt_tokens
    assert lay.length == 1 + num_patches + num_prompt_tokens + 56 + 1
    # the first head position holds the empty token, the rest are zero action slots
    empty = policy.model.decoder.embed_tokens.weight[policy.model.cfg.empty_token_id]
    torch.testing.assert_close(prep.embeds[0, lay.head_start], empty.detach())
    assert torch.count_nonzero(prep.embeds[0, lay.head_start + 1:lay.length - 1]) == 0


@torch.inference_mode()
def test_layer_from_its_input_equals_the_transformers_layer():
    """forward_layer (the decoder's own loop) against transformers' LlamaDecoderLayer with
    SDPA, unmasked, on the full and on a pruned token set."""
    dec, prep, pos, cos, sin = decoder_inputs()
    for keep in (pos, torch.tensor([0, 3, 40, 200, 513, 580])):
        h, c, s = prep.embeds[:, keep], cos[:, keep], sin[:, keep]
        for layer in dec.layers:
            ours = forward_layer(layer, h, layer_input(layer, h, c, s), c, s)
            theirs = layer(h, attention_mask=None, position_embeddings=(c, s))
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


class _CountingKeys:
    def __init__(self, layers):
        self.calls = 0
        for layer in layers:
            layer.self_attn.k_proj.register_forward_hook(self._count)

    def _count(self, *_):
        self.calls += 1


def test_scoring_layers_reuse_their_keys():
    """The pruned pass projects keys once per layer: scoring a layer reads the keys that
    layer then runs with, also after tokens were dropped between scoring and running."""
    policy = tiny_policy(PruneConfig())
    policy.step(observation(0))  # the first step keeps every patch (no earlier frame)
    counter = _CountingKeys(policy.model.decoder.layers)
    _, stats = policy.step(observation(1))
    assert stats.kept_visual_tokens < 512  # tokens were scored and dropped
    assert counter.calls == policy.model.num_layers
    cfg, n = policy.config, policy.model.num_layers
    scored = ({0, 1} | set(resolve_layers(cfg.layer_prune_layers, n, cfg.layer_depth, 2))
              | set(resolve_layers(cfg.global_score_layers, n, cfg.layer_depth)))
    assert stats.scored_layers == len(scored) > 2


@torch.inference_mode()
def test_keys_kept_through_a_drop_equal_keys_computed_after_it():
    dec, prep, pos, cos, sin = decoder_inputs()
    keep = torch.tensor([0, 5, 9, 300, 500, 581])
    early = DecoderState(prep.embeds, pos, cos, sin)
    early.layer_input(dec.layers[2])
    early.select(keep)
    late = DecoderState(prep.embeds, pos, cos, sin)
    late.select(keep)
    a, b = early.layer_input(dec.layers[2]), late.layer_input(dec.layers[2])
    torch.testing.assert_close(a.keys, b.keys, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(a.normed, b.normed, rtol=1e-6, atol=1e-6)


@torch.inference_mode()
def test_query_rope_equals_the_layers_rope():
    """The scorer's four-operation RoPE of the query rows (a roll and a sign-folded sin)
    is apply_rope on those rows."""
    dec, prep, _, cos, sin = decoder_inputs()
    rows = torch.tensor(prep.layout.query_positions)
    x = torch.randn(1, 4, rows.numel(), cos.shape[-1], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(QueryRope.at(cos, sin, rows).apply(x),
                               apply_rope(x, cos[:, rows], sin[:, rows]))


@torch.inference_mode()
def test_query_rows_follow_dropped_visual_tokens():
    """The task-text queries form one block after the visual tokens, so the scorer finds
    them by a slice that moves back as visual tokens are dropped; it equals the search by
    original position, and so do the scores."""
    dec, prep, pos, cos, sin = decoder_inputs()
    layout = prep.layout
    state = DecoderState(prep.embeds, pos, cos, sin)
    block, searched = ScoreProbe(layout, (1,)), ScoreProbe(layout, (1,))
    searched._query_block = False
    assert block._query_block
    for keep in (torch.arange(0, 500, 3), torch.arange(0, 100, 2)):
        block.keep_present(state, keep)  # visual tokens only; the text keeps its place
        rows = block.query_rows(state)
        assert isinstance(rows, slice)
        want = state.index_of(torch.tensor(layout.query_positions))
        assert torch.arange(state.hidden.shape[1])[rows].tolist() == want.tolist()
        assert searched.query_rows(state).tolist() == want.tolist()
        a = block.score(dec.layers[1], state)
        b = searched.score(dec.layers[1], state)
        torch.testing.assert_close(a.values, b.values)
        assert a.ids.tolist() == b.ids.tolist()
