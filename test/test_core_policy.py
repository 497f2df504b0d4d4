"""SpecPrunePolicy.step: outputs, statistics, live config, cross-step state, bad input."""
import threading

import numpy as np
import pytest

from specprune import EEMotion, NonFiniteActionError, Observation, PruneConfig
from specprune.synthetic import SyntheticEpisode

from core_helpers import blank_observation, observation, tiny_policy


def test_step_returns_a_chunk_and_consistent_stats():
    policy = tiny_policy()
    chunk, first = policy.step(observation(0))
    assert chunk.actions.shape == (8, 7) and np.all(np.isfinite(chunk.actions))
    # no earlier frame: nothing is known to be static, every patch stays (and seeds
    # V_global from a full pass); no history for V_global yet
    assert first.n_global == 0 and first.n_dynamic == 512 and first.kept_visual_tokens == 512
    chunk, stats = policy.step(observation(1))
    assert stats.mode == "coarse"
    assert stats.visual_tokens_per_layer[0] == 512  # layer 0 sees everything
    assert stats.kept_visual_tokens < 512
    assert stats.kept_visual_tokens == sum(int(m.sum()) for m in stats.kept_masks)
    assert [m.shape for m in stats.kept_masks] == [(16, 16), (16, 16)]
    assert stats.n_global > 0 and 0 < stats.n_dynamic < 512
    assert stats.total_ms >= stats.llm_ms > 0


def test_second_step_uses_previous_scores_and_changed_patches():
    policy = tiny_policy()
    policy.step(observation(0))
    _, stats = policy.step(observation(1))
    assert stats.n_global > 0
    assert stats.n_dynamic > 0  # the synthetic object moved


def test_released_code_rule_keeps_every_patch_that_is_not_among_the_most_static():
    """dynamic_from_static: no earlier frame, nothing is static (every patch kept); then
    per view the static_k most similar patches at or above the threshold are dropped unless
    attention keeps them, and every other patch stays: 256 - 200 per view when nothing
    moved, more when something did."""
    cfg = PruneConfig(dynamic_from_static=True, layer_prune_enabled=False)
    policy = tiny_policy(cfg)
    _, first = policy.step(blank_observation())
    assert first.n_dynamic == 512 and first.kept_visual_tokens == 512
    _, still = policy.step(blank_observation())
    assert still.n_dynamic == 2 * (256 - 200)
    assert 2 * 56 <= still.kept_visual_tokens < 512
    policy.update_config(static_k_coarse=250)
    _, fewer = policy.step(blank_observation())
    assert fewer.n_dynamic == 2 * 6
    moving = tiny_policy(cfg.updated(static_k_coarse=250))
    moving.step(observation(0))
    _, moved = moving.step(observation(1))
    assert moved.n_dynamic > 2 * 6  # the moved object's patches, under the threshold, stay
    icml_policy = tiny_policy(PruneConfig(layer_prune_enabled=False))
    icml_policy.step(blank_observation())  # the first step keeps every patch in both rules
    _, icml = icml_policy.step(blank_observation())
    assert icml.kept_visual_tokens < still.kept_visual_tokens


def test_gripper_is_passed_through_unnormalisation_mask():
    policy = tiny_policy()
    chunk, _ = policy.step(observation(0))
    np.testing.assert_allclose(chunk.actions[:, -1], chunk.normalized[:, -1])
    np.testing.assert_allclose(chunk.actions[:, 0],
                               0.5 * (chunk.normalized[:, 0] + 1) * 1.875 - 0.9375, rtol=1e-6)


def test_keep_scale_update_changes_kept_tokens_at_next_step():
    policy = tiny_policy(PruneConfig(layer_prune_enabled=False))
    policy.step(observation(0))  # the first step of an episode keeps every patch
    _, small = policy.step(observation(1))
    policy.update_config(keep_scale=3.0)
    policy.reset()
    policy.step(observation(0))
    _, large = policy.step(observation(1))
    assert large.kept_visual_tokens > small.kept_visual_tokens


def test_invalid_update_is_rejected_and_config_kept():
    policy = tiny_policy()
    with pytest.raises(ValueError, match="keep_scale"):
        policy.update_config(keep_scale=-1.0)
    assert policy.config.keep_scale == 1.0


def test_update_config_from_another_thread_while_stepping():
    policy = tiny_policy()
    errors = []

    def writer():
        try:
            for i in range(20):
                policy.update_config(keep_scale=1.0 + (i % 3) * 0.5)
        except Exception as err:  # pragma: no cover - the assertion reports it
            errors.append(err)

    thread = threading.Thread(target=writer)
    thread.start()
    for step in range(3):
        policy.step(observation(step))
    thread.join()
    assert not errors


def test_disabled_pruning_runs_every_token():
    policy = tiny_policy(PruneConfig(enabled=False))
    _, stats = policy.step(observation(0))
    assert stats.mode == "off" and set(stats.visual_tokens_per_layer) == {512}


def test_slowing_down_switches_to_fine_and_asks_to_replan():
    policy = tiny_policy(PruneConfig(warmup_steps=1))
    fast = EEMotion(linear=np.array([0.3, 0, 0]), angular=np.zeros(3))
    slow = EEMotion(linear=np.array([0.02, 0, -0.01]), angular=np.zeros(3))
    results = [policy.step(observation(i, ee_motion=m))
               for i, m in enumerate([fast, fast, slow, slow])]
    assert [s.mode for _, s in results] == ["coarse", "coarse", "fine", "fine"]
    assert [c.replan for c, _ in results] == [False, False, True, False]
    assert results[2][1].n_local > results[1][1].n_local  # fine keeps more


def test_reset_forgets_history():
    policy = tiny_policy()
    policy.step(observation(0))
    policy.step(observation(1))
    policy.reset()
    _, stats = policy.step(observation(2))
    assert stats.n_global == 0 and stats.n_dynamic == 512  # as on a fresh policy's first step


def test_bucketing_makes_kept_count_a_multiple():
    policy = tiny_policy(PruneConfig(bucket_size=32, layer_prune_enabled=False))
    for step in range(3):
        _, stats = policy.step(observation(step))
        assert stats.kept_visual_tokens % 32 == 0


def test_policy_own_actions_feed_the_controller_without_measured_motion():
    policy = tiny_policy(PruneConfig(warmup_steps=0))
    _, first = policy.step(observation(0, ee_motion=None))
    _, second = policy.step(observation(1, ee_motion=None))
    assert first.trans_speed == 0.0 and second.trans_speed > 0.0


def _bad(**changes):
    obs = blank_observation()
    for k, v in changes.items():
        setattr(obs, k, v)
    return obs


@pytest.mark.parametrize("obs, words", [
    (_bad(images=[np.zeros((224, 224, 3), np.uint8)]), "expected 2 camera views"),
    (_bad(images=[np.zeros((224, 224, 3), np.float32)] * 2), "dtype must be uint8"),
    (_bad(images=[np.zeros((224, 224, 4), np.uint8)] * 2), r"\(H, W, 3\)"),
    (_bad(images=[np.zeros((8, 8, 3), np.uint8)] * 2), "smaller than one patch"),
    (_bad(images=["not an image"] * 2), "numpy array"),
    (_bad(proprio=np.array([np.nan] * 8)), "non-finite"),
    (_bad(proprio=np.zeros(3)), "8 values"),
    (_bad(proprio=None), "proprio"),
    (_bad(instruction="   "), "instruction"),
])
def test_bad_input_raises_a_clear_error(obs, words):
    policy = tiny_policy()
    with pytest.raises(ValueError, match=words):
        policy.step(obs)


def test_other_image_sizes_are_resized():
    policy = tiny_policy()
    episode = SyntheticEpisode(size=256)
    chunk, _ = policy.step(episode.observation(0))
    assert chunk.actions.shape == (8, 7)


def test_non_finite_model_output_raises():
    policy = tiny_policy()
    with_nan = policy.model.action_head.model.fc2.bias
    with_nan.data[0] = float("nan")
    with pytest.raises(NonFiniteActionError):
        policy.step(observation(0))


def test_observation_type_is_plain_data():
    obs = Observation(images=[], instruction="x")
    assert obs.proprio is None and obs.ee_motion is None


def test_longer_lookback_applies_without_reset():
    policy = tiny_policy(PruneConfig(lookback_max_steps=6))
    for step in range(3):
        policy.step(observation(step))
    policy.update_config(lookback_max_steps=12)
    assert policy._frames.maxlen == 13 and len(policy._frames) == 3
