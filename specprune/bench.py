"""``specprune-bench``: unpruned vs SpecPrune vs FastV on one observation sequence.

The three variants share one model and see the same observations; within each step
they run interleaved (the order rotates) so CPU noise hits all of them alike. Ratios
are of medians taken in this one run. FLOPs are counted analytically from the tokens
each layer actually processed (scoring rows included).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from specprune.config import PruneConfig, parse_overrides
from specprune.prune.baselines import GridDropHook, RandomDropHook
from specprune.prune.decoder import run_decoder
from specprune.policy import SpecPrunePolicy, load_policy
from specprune.prune.pruning_hooks import FastVHook, ScoreProbe
from specprune.prune.selection import topk_per_view
from specprune.synthetic import SyntheticEpisode
from specprune.types import Observation, StepStats


class FastVPolicy(SpecPrunePolicy):
    """FastV baseline: drop to ``budget`` visual tokens at ``layer`` (default 2)."""

    budget: int = 256
    layer: int = 2

    def _make_hook(self, prep, cfg, fine, motion, stats):  # noqa: D102 (see base)
        return FastVHook(prep.layout, self.layer, self.budget)


class RandomDropPolicy(FastVPolicy):
    """Random token dropping: at FastV's layer keep ``budget`` visual tokens drawn uniformly
    at random, seeded by (``episode_seed``, the step's index since ``reset``): the same
    episode drops the same tokens on every run."""

    episode_seed: int = 0

    def reset(self) -> None:
        super().reset()
        self.step_index = 0

    def _make_hook(self, prep, cfg, fine, motion, stats):  # noqa: D102 (see base)
        hook = RandomDropHook(prep.layout, self.layer, self.budget,
                              (self.episode_seed, self.step_index))
        self.step_index += 1
        return hook


class GridDropPolicy(FastVPolicy):
    """Even-grid dropping: at FastV's layer keep ``budget`` visual tokens spread over every
    view at an even stride (the same tokens on every step of that count)."""

    def _make_hook(self, prep, cfg, fine, motion, stats):  # noqa: D102 (see base)
        return GridDropHook(prep.layout, self.layer, self.budget)


#: The baseline policies by the configuration names the evaluation gives them
#: (specprune_ros.eval.configurations.IN_PROCESS_ONLY; a test checks the names agree).
BASELINE_POLICIES = {"fastv": FastVPolicy, "random": RandomDropPolicy, "grid": GridDropPolicy}


@dataclass
class Series:
    llm_ms: List[float] = field(default_factory=list)
    step_ms: List[float] = field(default_factory=list)
    sel_frac: List[float] = field(default_factory=list)
    kept: List[int] = field(default_factory=list)
    flops: List[float] = field(default_factory=list)
    l1: List[float] = field(default_factory=list)

    def add(self, stats: StepStats, flops: float) -> None:
        self.llm_ms.append(stats.llm_ms)
        self.step_ms.append(stats.total_ms)
        self.sel_frac.append(stats.selection_ms / max(stats.total_ms, 1e-9))
        self.kept.append(stats.kept_visual_tokens)
        self.flops.append(flops)


def llm_flops(tokens_per_layer: List[int], text_cfg: Dict, score_layers: int = 0,
              queries: int = 0) -> float:
    """Multiply-adds x2 of the decoder for the given per-layer token counts, plus what
    scoring adds at each of ``score_layers`` layers: the query rows' projection and their
    logits (the keys are the layer's own, layer_forward.py)."""
    h = text_cfg["hidden_size"]
    heads = text_cfg["num_attention_heads"]
    kv = text_cfg.get("num_key_value_heads", heads) * (h // heads)
    mlp = text_cfg["intermediate_size"]
    total = 0.0
    for t in tokens_per_layer:
        proj = 2 * t * (2 * h * h + 2 * h * kv)  # q, o + k, v
        attn = 2 * 2 * t * t * h  # scores + weighted sum
        total += proj + attn + 2 * t * 3 * h * mlp
    if score_layers:
        t = statistics.mean(tokens_per_layer)
        total += score_layers * 2 * queries * (h * h + 2 * t * h)
    return total


@torch.inference_mode()
def hit_rate(policy: SpecPrunePolicy, obs: Observation, k: int = 20) -> float:
    """Fraction of the last layer's top-k (per view) found in layers 0/1's top-k."""
    prep = policy._prepare(obs)
    last = policy.model.num_layers - 1
    probe = ScoreProbe(prep.layout, (0, 1, last))
    run_decoder(policy.model.decoder, prep.embeds, probe)
    per_view, views = prep.layout.patches_per_view, prep.layout.num_views
    ks = [k] * views
    early = topk_per_view(probe.scores[0], per_view, ks) | topk_per_view(
        probe.scores[1], per_view, ks)
    target = topk_per_view(probe.scores[last], per_view, ks)
    return float((early & target).sum()) / float(target.sum())


def run(preset: str, steps: int, warmup: int, seed: int, threads: int,
        config: Optional[PruneConfig] = None, device: str = "cpu",
        dtype: str = "float32") -> Dict:
    torch.set_num_threads(threads)
    base = load_policy(preset, device=device, dtype=dtype,
                       prune_config=PruneConfig(enabled=False), seed=seed)
    shared = (base.model, base.tokenizer, base.statistics, base.layout)
    spec = SpecPrunePolicy(*shared, config or PruneConfig(), str(base.device), base.dtype)
    fastv = FastVPolicy(*shared, PruneConfig(enabled=False), str(base.device), base.dtype)
    episode = SyntheticEpisode(seed=seed, num_views=base.model.cfg.num_images,
                               proprio_dim=base.model.cfg.proprio_dim)
    series = {"baseline": Series(), "specprune": Series(), "fastv": Series()}
    hits: List[float] = []
    text_cfg = base.model.cfg.text_config
    queries = 0
    for i in range(warmup + steps):
        obs = episode.observation(i)
        outs = {}
        order = [("baseline", base), ("specprune", spec), ("fastv", fastv)]
        for name, pol in order[i % 3:] + order[:i % 3]:
            outs[name] = pol.step(obs)
            if name == "specprune":  # FastV keeps SpecPrune's latest budget
                fastv.budget = outs[name][1].kept_visual_tokens
        if i < warmup:
            continue
        queries = len(spec._prompt(obs.instruction).task_ids)
        ref = outs["baseline"][0].normalized
        for name, (chunk, st) in outs.items():
            extra = st.scored_layers if name == "specprune" else (1 if name == "fastv" else 0)
            series[name].add(st, llm_flops(st.tokens_per_layer, text_cfg, extra, queries))
            series[name].l1.append(float(np.abs(chunk.normalized - ref).mean()))
        hits.append(hit_rate(base, obs))
    result = _summary(series, hits, base, threads, preset, steps)
    result["prune_config"] = dataclasses.asdict(spec.config)  # SpecPrune's, as it ran
    return result


def _med(values: List[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _summary(series: Dict[str, Series], hits: List[float], policy: SpecPrunePolicy,
             threads: int, preset: str, steps: int) -> Dict:
    b, s, f = series["baseline"], series["specprune"], series["fastv"]
    return {
        "preset": preset, "steps": steps,
        "baseline_llm_ms": _med(b.llm_ms), "specprune_llm_ms": _med(s.llm_ms),
        "fastv_llm_ms": _med(f.llm_ms),
        "llm_speedup": _med(b.llm_ms) / _med(s.llm_ms),
        "baseline_step_ms": _med(b.step_ms), "specprune_step_ms": _med(s.step_ms),
        "fastv_step_ms": _med(f.step_ms),
        "step_speedup": _med(b.step_ms) / _med(s.step_ms),
        "fastv_step_speedup": _med(b.step_ms) / _med(f.step_ms),
        "fastv_llm_speedup": _med(b.llm_ms) / _med(f.llm_ms),
        "selection_overhead_frac": _med(s.sel_frac),
        "kept_visual_tokens_mean": float(np.mean(s.kept)),
        "visual_tokens_total": (policy.model.cfg.num_images
                                * policy.model.vision_backbone.num_patches),
        "flops_ratio": float(np.mean(s.flops) / np.mean(b.flops)),
        "fastv_flops_ratio": float(np.mean(f.flops) / np.mean(b.flops)),
        "action_l1_vs_baseline": {"specprune": float(np.mean(s.l1)),
                                  "fastv": float(np.mean(f.l1))},
        "hit_rate_layers01_vs_last": float(np.mean(hits)),
        "machine": machine(threads, str(policy.device),
                           str(policy.dtype).replace("torch.", "")),
    }


def machine(threads: int, device: str, dtype: str) -> Dict[str, Any]:
    """Where the numbers were measured (the ``machine`` entry of every result JSON): the
    CPU model and the kernels torch dispatched (``cpu_capability``: DEFAULT, AVX2, AVX512;
    ATEN_CPU_CAPABILITY overrides it), since float results differ between them."""
    return {"platform": platform.platform(), "processor": _cpu_name(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_count": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "device": device, "dtype": dtype, "python": sys.version.split()[0]}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def format_table(r: Dict) -> str:
    rows = [("variant", "LLM ms", "step ms", "step x", "FLOPs", "kept vis", "L1 vs base"),
            ("unpruned (SDPA)", f"{r['baseline_llm_ms']:.0f}", f"{r['baseline_step_ms']:.0f}",
             "1.00", "100%", str(r["visual_tokens_total"]), "0"),
            ("SpecPrune", f"{r['specprune_llm_ms']:.0f}", f"{r['specprune_step_ms']:.0f}",
             f"{r['step_speedup']:.2f}", f"{100 * r['flops_ratio']:.0f}%",
             f"{r['kept_visual_tokens_mean']:.0f}",
             f"{r['action_l1_vs_baseline']['specprune']:.4f}"),
            ("FastV (same budget)", f"{r['fastv_llm_ms']:.0f}", f"{r['fastv_step_ms']:.0f}",
             f"{r['fastv_step_speedup']:.2f}", f"{100 * r['fastv_flops_ratio']:.0f}%",
             f"{r['kept_visual_tokens_mean']:.0f}",
             f"{r['action_l1_vs_baseline']['fastv']:.4f}")]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.append(f"LLM speedup {r['llm_speedup']:.2f}x, selection overhead "
                 f"{100 * r['selection_overhead_frac']:.1f}% of the step, hit rate "
                 f"(layers 0-1 top-20 vs last layer) {r['hit_rate_layers01_vs_last']:.2f}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="oft-cpu")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on GPU), float32, ...")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--prune", action="append", default=[], metavar="FIELD=VALUE",
                        help="a PruneConfig change for SpecPrune (repeatable), e.g. "
                             "layer_depth=32 for a 16-layer checkpoint (README, LIBERO)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    try:
        config = PruneConfig().updated(**dict(parse_overrides(args.prune)))
    except ValueError as exc:
        parser.error(str(exc))
    result = run(args.preset, args.steps, args.warmup, args.seed, args.threads, config,
                 device=args.device, dtype=args.dtype)
    print(format_table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
