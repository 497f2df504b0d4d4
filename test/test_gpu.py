"""The production path (CUDA, bf16). Skipped with the reason on machines without a GPU."""
import numpy as np
import pytest
import torch

from specprune import PruneConfig, load_policy

from core_helpers import observation

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (production target: bf16)")]


def test_bf16_cuda_step_matches_fp32_cpu_roughly():
    gpu = load_policy("tiny", device="cuda", dtype="auto", seed=0)
    cpu = load_policy("tiny", device="cpu", dtype="float32", seed=0)
    assert gpu.dtype == torch.bfloat16
    for step in range(3):
        a, stats = gpu.step(observation(step))
        b, _ = cpu.step(observation(step))
        assert stats.kept_visual_tokens < 512
        assert np.abs(a.normalized - b.normalized).mean() < 0.1


def test_bucketed_shapes_repeat_on_gpu():
    policy = load_policy("tiny", device="cuda", prune_config=PruneConfig(bucket_size=64))
    kept = {policy.step(observation(i))[1].kept_visual_tokens for i in range(4)}
    assert all(k % 64 == 0 for k in kept)
