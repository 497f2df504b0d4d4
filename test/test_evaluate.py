"""specprune-eval: statistics against known values, the in-process runner on the tiny preset
(short episodes of the real simulated task), fault handling, and the ROS runner across
real node processes."""
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import numpy as np
import pytest

from ros_helpers import REPO, domain_id, ros_environment
from specprune import ActionChunk, NonFiniteActionError, PruneConfig, load_policy
from specprune.model.checkpoint import checkpoint_hash
from specprune_ros.eval import episodes, evaluate
from specprune_ros.eval.configurations import CONFIGS, run_meta
from specprune_ros.eval.episode_env import SimArmEnv
from specprune_ros.eval.eval_results import ConfigRun, EpisodeRecord
from specprune_ros.eval.eval_stats import (mcnemar_exact_p, newcombe_paired_interval,
                                           paired_comparison, paired_difference_interval,
                                           wilson_interval)
from specprune_ros.sim.sim_arm import SimArm, SimArmConfig

TASK = "pick_color"
EPISODES, HORIZON, SEED = 2, 12, 3
CONFIG_KEYS = {"success_rate", "success_ci95", "episodes", "step_ms_mean", "step_ms_p95",
               "kept_visual_tokens_mean", "action_l1_vs_unpruned", "fine_mode_fraction",
               "per_episode"}


# ------------------------------------------------------------------------------ statistics
@pytest.mark.parametrize("wins, n, lo, hi", [
    (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634),
    (1, 1, 0.2065, 1.0), (81, 263, 0.2553, 0.3662)])
def test_wilson_interval_matches_known_values(wins: int, n: int, lo: float, hi: float
                                              ) -> None:
    got = wilson_interval(wins, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_interval_rejects_impossible_counts_and_is_vacuous_without_data() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)


def test_paired_comparison_counts_discordant_pairs_and_brackets_the_difference() -> None:
    first = [True] * 8 + [True] * 5 + [False] * 4 + [False] * 9
    second = [True] * 8 + [False] * 5 + [True] * 4 + [False] * 9
    result = paired_comparison(first, second)
    assert (result["both_success"], result["only_first"], result["only_second"],
            result["both_failure"], result["episodes"]) == (8, 5, 4, 9, 26)
    lo, hi = result["difference_ci95"]
    assert result["difference"] == pytest.approx(1 / 26)
    assert lo < result["difference"] < hi
    assert result["difference_ci95_method"] == "newcombe1998_method10"
    assert (lo, hi) == pytest.approx(newcombe_paired_interval(8, 5, 4, 9))
    # swapping the two sides mirrors the interval
    assert newcombe_paired_interval(8, 4, 5, 9) == pytest.approx((-hi, -lo))
    # Agresti-Min, still recorded next to it; by hand: b = 5.5, c = 4.5, n = 28
    am_lo, am_hi = result["difference_ci95_agresti_min"]
    half = 1.959964 * math.sqrt(10 - 1 / 28) / 28
    assert (am_lo, am_hi) == pytest.approx((1 / 28 - half, 1 / 28 + half), abs=1e-6)
    assert paired_difference_interval(4, 5, 26) == pytest.approx((-am_hi, -am_lo))
    # identical outcomes: no difference, yet an interval that reflects only n = 20 episodes
    same = paired_comparison([True, False] * 10, [True, False] * 10)
    assert same["difference"] == 0 and same["mcnemar_p"] == 1.0
    s_lo, s_hi = same["difference_ci95"]
    assert s_lo == pytest.approx(-s_hi) and 0.05 < s_hi < 0.15
    assert mcnemar_exact_p(0, 6) == pytest.approx(2 / 64)


def test_newcombe_interval_matches_the_published_example() -> None:
    """Cavo et al. 2012 (complete response before / after consolidation therapy, 161
    patients: 59 both, 6 only before, 16 only after, 80 neither), the worked example of
    Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables" (2017), ch. 8:
    Newcombe square-and-add estimate -0.0621, 95 % CI -0.1186 to -0.0046 (the values the
    book's R package, contingencytables, asserts in tests/testthat/test-ch8.R)."""
    lo, hi = newcombe_paired_interval(59, 6, 16, 80)
    assert (lo, hi) == pytest.approx((-0.1186, -0.0046), abs=5e-5)
    result = paired_comparison([True] * 65 + [False] * 96,
                               [True] * 59 + [False] * 6 + [True] * 16 + [False] * 80)
    assert result["difference"] == pytest.approx(-0.0621, abs=5e-5)
    assert result["difference_ci95"] == pytest.approx([lo, hi])


def _wilson_by_bisection(successes: int, n: int, z: float, upper: bool) -> float:
    """The Wilson bound: the root of f(pi) = (p - pi)^2 - z^2 pi (1 - pi) / n on one side of
    p (f <= 0 at p, > 0 at 0 and 1), by bisection: no closed form shared with the code."""
    p = successes / n
    if (upper and successes == n) or (not upper and successes == 0):
        return p

    def f(pi: float) -> float:
        return (p - pi) ** 2 - z * z * pi * (1 - pi) / n
    inside, outside = p, (1.0 if upper else 0.0)
    for _ in range(200):
        mid = (inside + outside) / 2
        if f(mid) > 0:
            outside = mid
        else:
            inside = mid
    return (inside + outside) / 2


@pytest.mark.parametrize("a, b, c, d", [(14, 5, 0, 22), (1, 1, 7, 12), (40, 3, 9, 48),
                                        (95, 4, 1, 0), (50, 0, 0, 50), (0, 7, 2, 1)])
def test_newcombe_interval_matches_an_independent_computation(a, b, c, d) -> None:
    """Newcombe (1998) method 10 written out from the paper's definitions: Wilson bounds
    by bisection, phi with the continuity correction of A = ad - bc."""
    n, z = a + b + c + d, 1.959963984540054
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = (_wilson_by_bisection(a + b, n, z, up) for up in (False, True))
    l2, u2 = (_wilson_by_bisection(a + c, n, z, up) for up in (False, True))
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    big_a = a * d - b * c
    corrected = big_a - n / 2 if big_a > n / 2 else (0 if big_a >= 0 else big_a)
    phi = corrected / math.sqrt(margins) if margins else 0.0
    lower = p1 - p2 - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2)
                                + (u2 - p2) ** 2)
    upper = p1 - p2 + math.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1)
                                + (u1 - p1) ** 2)
    assert newcombe_paired_interval(a, b, c, d) == pytest.approx((lower, upper), abs=1e-9)
    assert lower <= (b - c) / n <= upper


# ------------------------------------------------------------------------------ direct runner
@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """One CLI run over every configuration: tiny preset, short episodes, JSON + PNG."""
    out = tmp_path_factory.mktemp("eval")
    code = evaluate.main(["--policy", "tiny", "--task", TASK, "--episodes", str(EPISODES),
                          "--horizon", str(HORIZON), "--seed", str(SEED), "--threads", "1",
                          "--hit-every", "1", "--json", str(out / "eval.json"),
                          "--plot", str(out / "eval.png")])
    assert code == 0
    result = json.loads((out / "eval.json").read_text())
    result["_png"] = out / "eval.png"
    return result


def test_json_has_every_configuration_with_sane_values(direct: Dict[str, Any]) -> None:
    assert list(direct["configs"]) == list(CONFIGS)
    for name, c in direct["configs"].items():
        assert CONFIG_KEYS <= set(c), name
        assert c["episodes"] == EPISODES and 0.0 <= c["success_rate"] <= 1.0
        lo, hi = c["success_ci95"]
        assert 0.0 <= lo <= c["success_rate"] <= hi <= 1.0
        assert 0 < c["step_ms_mean"] <= c["step_ms_p95"] < 60_000
        assert 0 < c["kept_visual_tokens_mean"] <= c["visual_tokens_total"] == 512
        assert 0.0 <= c["fine_mode_fraction"] <= 1.0
        assert c["errors"] == 0, c["per_episode"]
        for ep in c["per_episode"]:
            assert 1 <= ep["steps"] <= HORIZON and ep["policy_steps"] >= 1
            assert ep["instruction"].startswith("pick up the ")
            assert len(ep["step_ms"]) == len(ep["llm_ms"]) == ep["policy_steps"]
            assert all(0 < ms < 60_000 for ms in ep["step_ms"])
    assert direct["configs"]["unpruned"]["kept_visual_tokens_mean"] == 512
    assert direct["configs"]["specprune"]["kept_visual_tokens_mean"] < 512
    assert 0.0 <= direct["hit_rate_layers01_vs_last"] <= 1.0 and direct["hit_rate_samples"] > 0
    assert direct["step_speedup_specprune_vs_unpruned"] > 0
    median = direct["step_speedup_median_specprune_vs_unpruned"]
    assert median == pytest.approx(direct["configs"]["unpruned"]["step_ms_median"]
                                   / direct["configs"]["specprune"]["step_ms_median"])
    assert direct["specprune_vs_unpruned"]["episodes"] == EPISODES
    assert direct["machine"]["threads"] == 1 and direct["policy"] == "tiny"


def test_json_records_the_checkpoint_hash_and_the_cpu(direct: Dict[str, Any]) -> None:
    """A preset has no folder to hash (its weights follow from its name); a checkpoint
    folder's JSON carries the hash of its content; every JSON names the CPU model and
    the kernels torch dispatched."""
    assert direct["checkpoint_hash"] is None
    assert direct["machine"]["processor"] and direct["machine"]["cpu_capability"]
    shipped = str(REPO / "checkpoints" / "pick_color")
    args = evaluate.parse_args(["--policy", shipped])
    meta = run_meta(args, [SEED], 1.0, {})
    assert meta["policy"] == shipped and meta["checkpoint_hash"] == checkpoint_hash(shipped)


def test_every_configuration_runs_the_same_seeds_and_instructions(direct: Dict[str, Any]
                                                                  ) -> None:
    expected = [SEED + i for i in range(EPISODES)]
    assert direct["seeds"] == expected
    reference = direct["configs"]["unpruned"]["per_episode"]
    for name, c in direct["configs"].items():
        assert [e["seed"] for e in c["per_episode"]] == expected, name
        assert [e["instruction"] for e in c["per_episode"]] == [
            e["instruction"] for e in reference], name


def test_action_deviation_is_zero_unpruned_and_measured_when_pruned(direct: Dict[str, Any]
                                                                    ) -> None:
    configs = direct["configs"]
    assert configs["unpruned"]["action_l1_vs_unpruned"] == 0.0
    for name in ("specprune", "fastv"):
        c = configs[name]
        assert c["action_l1_samples"] == c["policy_steps"] > 0
        assert 0.0 < c["action_l1_vs_unpruned"] < 2.0
    # the baselines keep SpecPrune's count per step: on each episode's first observation
    # (the same frame, fresh state in every configuration) exactly SpecPrune's
    for name in ("fastv", "random"):
        assert configs[name]["prune_config_changes"]["budget"] == "specprune_per_step"
        assert [e["kept_visual_tokens"][0] for e in configs[name]["per_episode"]] == [
            e["kept_visual_tokens"][0] for e in configs["specprune"]["per_episode"]]


def test_plot_is_a_png(direct: Dict[str, Any]) -> None:
    assert direct["_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------ faults
class _Raising:
    """Wraps a policy: raises ``exc`` on its second step."""

    def __init__(self, policy: Any, exc: Exception) -> None:
        self._policy, self._exc, self.calls = policy, exc, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._policy, name)

    def step(self, obs: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            raise self._exc
        return self._policy.step(obs)


class _NaN(_Raising):
    """Returns NaN actions on every step."""

    def step(self, obs: Any) -> Any:
        chunk, stats = self._policy.step(obs)
        bad = np.full_like(chunk.actions, np.nan)
        return ActionChunk(actions=bad, normalized=bad), stats


@pytest.fixture(scope="module")
def arm() -> Iterator[SimArm]:
    sim = SimArm(SimArmConfig(task=TASK, horizon=HORIZON))
    yield sim
    sim.close()


def test_exceptions_and_non_finite_actions_fail_the_episode_not_the_run(arm: SimArm) -> None:
    base = load_policy("tiny", device="cpu", dtype="float32",
                       prune_config=PruneConfig(enabled=False))
    variants = episodes.build_variants(base, ["unpruned", "specprune", "no_global"])
    variants["specprune"].policy = _Raising(variants["specprune"].policy,
                                            NonFiniteActionError("non-finite model output"))
    variants["no_global"].policy = _NaN(variants["no_global"].policy, RuntimeError())
    runner = episodes.DirectRunner(SimArmEnv(arm), base, HORIZON, l1_every=0)
    runs: Dict[str, ConfigRun] = episodes.run_direct(variants, runner, [0, 1],
                                                     progress=lambda line: None)
    assert [e.error for e in runs["unpruned"].episodes] == [None, None]
    raised = runs["specprune"].episodes
    assert "NonFiniteActionError" in raised[0].error and not raised[0].success
    assert raised[1].error is None  # the next episode runs normally
    nan = runs["no_global"].episodes
    assert all(not e.success and "non-finite" in e.error for e in nan)
    assert all(e.steps == 0 for e in nan)  # nothing was executed


class _DyingEnv(SimArmEnv):
    """A simulator that dies at the reset of ``seed`` (a LIBERO worker process killed) once."""

    def __init__(self, arm: SimArm, seed: int) -> None:
        super().__init__(arm)
        self.dies_at = seed

    def reset(self, episode: int):
        if episode == self.dies_at:
            self.dies_at = None
            raise EOFError("the worker closed its pipe")
        return super().reset(episode)


def test_a_dying_simulator_stops_the_run_and_a_resumed_run_completes_it(arm: SimArm,
                                                                        tmp_path) -> None:
    """Recorded as failures, one dead LIBERO worker failed every later episode of every
    configuration, and the journal kept them: an environment error now stops the run
    before anything of that episode is journalled."""
    from specprune_ros.eval.eval_journal import Journal

    base = load_policy("tiny", device="cpu", dtype="float32",
                       prune_config=PruneConfig(enabled=False))
    variants = episodes.build_variants(base, ["unpruned", "specprune"])
    runner = episodes.DirectRunner(_DyingEnv(arm, seed=1), base, HORIZON, l1_every=0)
    key = {"test": "dying simulator"}
    path = str(tmp_path / "run.jsonl")
    with pytest.raises(episodes.SimulatorFailure, match="reset: EOFError"):
        episodes.run_direct(variants, runner, [0, 1, 2], progress=lambda line: None,
                            resume=episodes.Resume(path, key))
    runs = {n: ConfigRun(n, {}) for n in variants}
    assert Journal.open(path, key, runs).done == {(0, "unpruned"), (0, "specprune")}
    again = episodes.run_direct(variants, runner, [0, 1, 2], progress=lambda line: None,
                                resume=episodes.Resume(path, key))
    for run in again.values():
        assert [e.seed for e in run.episodes] == [0, 1, 2]
        assert all(e.error is None for e in run.episodes)


def test_unknown_configuration_and_missing_policy_are_rejected(capsys) -> None:
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--policy", "tiny", "--configs", "specprune,bogus"])
    assert "bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--policy", "/nonexistent/checkpoint"])
    assert "neither a checkpoint folder nor a preset" in capsys.readouterr().err


# ------------------------------------------------------------------------------ ROS runner
def test_ros_parameters_restore_every_field_another_configuration_changes() -> None:
    from specprune_ros.eval.eval_ros import prune_parameters

    params = prune_parameters(["unpruned", "specprune", "no_local"])
    keys = {k for p in params.values() for k in p}
    assert all(set(p) == keys for p in params.values())
    assert params["unpruned"]["prune.enabled"] is False
    assert params["specprune"]["prune.enabled"] is True
    assert params["specprune"]["prune.local_k_primary_coarse"] == 16
    assert params["no_local"]["prune.local_k_wrist_fine"] == 0


def test_ros_runner_knows_the_layers_the_node_prunes_at_as_in_process() -> None:
    """Without the roles the ROS JSON could not say which layer-pruning layers acted (its
    tables showed "-" although the node's per-layer counts show drops at 3/5/8/10)."""
    from specprune_ros.eval.eval_ros import config_layers, prune_parameters

    names = ["unpruned", "specprune", "no_layer_pruning"]
    policy = load_policy("libero-deep")
    layers = config_layers(prune_parameters(names, {"layer_depth": 32}), 16)
    for name in names:
        changes = dict(CONFIGS[name][0], layer_depth=32)
        policy.update_config(PruneConfig().updated(**changes))
        assert layers[name] == episodes.layer_roles(policy), name
    assert layers["specprune"]["layer_pruning"] == [3, 5, 8, 10]
    assert layers["no_layer_pruning"]["layer_pruning"] == [] and layers["unpruned"] == {}


def test_diagnostics_rows_become_step_records_and_partial_rows_do_not() -> None:
    from specprune_ros.eval.eval_ros import step_record
    row = {"mode": "coarse", "step_ms": "26.412", "llm_ms": "12.100",
           "kept_visual_tokens": "89", "visual_tokens_total": "512", "steps": "4"}
    record = step_record(row)
    assert (record.step_ms, record.llm_ms, record.kept_visual_tokens,
            record.visual_tokens_total, record.mode) == (26.412, 12.1, 89, 512, "coarse")
    assert record.visual_tokens_per_layer == []  # a row without the layers' counts
    assert step_record({"steps": "0", "publishing_enabled": "True"}) is None  # no step yet
    assert step_record(dict(row, kept_visual_tokens="many")) is None


def test_diagnostics_rows_give_the_episode_its_drops_per_layer_and_step_times() -> None:
    """What --via ros records per episode from the node's rows (policy_node.step_values):
    the tokens dropped before each layer summed over the steps, each step's times."""
    from specprune_ros.eval.eval_ros import step_record
    record = EpisodeRecord(seed=0)
    for per_layer, step_ms in (("512 89 89 60", "26.412"), ("512 120 120 70", "30.061")):
        record.note_step(step_record({
            "mode": "coarse", "step_ms": step_ms, "llm_ms": "12.100", "kept_visual_tokens":
            per_layer.split()[1], "visual_tokens_total": "512",
            "visual_tokens_per_layer": per_layer}))
    assert record.dropped_per_layer == [0, 423 + 392, 0, 29 + 50]
    assert record.kept_visual_tokens == [89, 120]
    assert (record.step_ms, record.llm_ms) == ([26.4, 30.1], [12.1, 12.1])


def test_ros_runner_readiness_follows_the_nodes_status_rows() -> None:
    """What evaluate_ros waits for before its first episode: not while inputs are missing
    or the node is inactive, yes when active with every input (publishing off)."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from specprune_ros.eval.eval_ros import EvalMonitor
    from specprune_ros.node.input_faults import Fault
    from specprune_ros.node.policy_messages import Counters, diagnostic_status

    def row(faults, active=True):
        return DiagnosticArray(status=[diagnostic_status(
            faults, None, Counters(), enabled=False, hardware_id="tiny", active=active)])

    rclpy.init()
    try:
        monitor = EvalMonitor([])
        assert not monitor.ready()  # nothing heard yet
        monitor._on_diag(row([Fault("camera_missing:primary", "camera primary: no image yet")]))
        assert not monitor.ready() and "no image yet" in monitor.node_status
        monitor._on_diag(row([], active=False))
        assert not monitor.ready()
        monitor._on_diag(row([]))
        assert monitor.ready() and monitor.node_status == "chunk publishing disabled (~/enable)"
        monitor._on_diag(row([Fault("ee_pose_missing", "no end-effector pose received yet")]))
        assert not monitor.ready()
        monitor.close()
    finally:
        rclpy.shutdown()


#: ticks per episode over ROS: on a loaded machine (training beside the suite) 16 ticks
#: (0.8 s) passed before the node's first chunk in 2 of ~10 runs
ROS_HORIZON = 32


def test_ros_runner_gives_the_same_form_of_results(direct: Dict[str, Any],
                                                   tmp_path: Path) -> None:
    out = tmp_path / "ros.json"
    env = ros_environment(tmp_path, domain_id(67))
    cmd = [sys.executable, "-m", "specprune_ros.eval.evaluate", "--via", "ros", "--policy", "tiny",
           "--task", TASK, "--episodes", "2", "--horizon", str(ROS_HORIZON), "--seed", str(SEED),
           "--configs", "unpruned,specprune,fastv", "--threads", "1", "--json", str(out),
           "--resume", str(tmp_path / "ros.jsonl")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    # the journal the pipeline's ros stage resumes from: its key, then each episode once
    lines = [json.loads(x) for x in (tmp_path / "ros.jsonl").read_text().splitlines()]
    assert lines[0]["key"]["via"] == "ros"
    assert sorted((x["config"], x["episode"]["seed"]) for x in lines[1:]) == [
        (c, SEED + i) for c in ("specprune", "unpruned") for i in range(2)]
    assert result["via"] == "ros" and result["configs_skipped"] == ["fastv"]
    assert list(result["configs"]) == ["unpruned", "specprune"]
    assert set(result) >= set(direct) - {"_png"}
    for name, c in result["configs"].items():
        assert set(c) == set(direct["configs"][name]), name
        assert [e["seed"] for e in c["per_episode"]] == [SEED, SEED + 1]
        assert [e["instruction"] for e in c["per_episode"]] == [  # the same episodes
            e["instruction"] for e in direct["configs"][name]["per_episode"]]
        assert all(1 <= e["steps"] <= ROS_HORIZON for e in c["per_episode"]), c["per_episode"]
        assert c["errors"] == 0, c["per_episode"]
        assert c["policy_steps"] >= 1 and math.isfinite(c["step_ms_mean"])
        assert c["layers"] == direct["configs"][name]["layers"], name  # the roles, as in process
    assert result["configs"]["unpruned"]["kept_visual_tokens_mean"] == 512
    assert result["configs"]["specprune"]["kept_visual_tokens_mean"] < 512
    for e in result["configs"]["specprune"]["per_episode"]:  # from the node's diagnostics
        assert len(e["step_ms"]) == len(e["kept_visual_tokens"]) == e["policy_steps"]
        assert sum(e["dropped_per_layer"]) > 0, e
    assert result["configs"]["unpruned"]["action_l1_vs_unpruned"] == 0.0
    assert result["configs"]["specprune"]["action_l1_vs_unpruned"] is None
    assert result["node_exit_codes"] == {"executor": 0, "policy": 0, "sim": 0}


def test_robot_limits_keep_the_robot_envelope_over_ros():
    from specprune_ros.eval.eval_ros import executor_command
    sim, robot = executor_command("sim"), executor_command("robot")
    assert any(arg.endswith("config/executor_sim.yaml") for arg in sim)
    assert not any(arg.endswith("executor_sim.yaml") for arg in robot)
    assert any(arg.endswith("config/executor.yaml") for arg in robot)
    assert "require_estop_signal:=false" in robot  # the only waiver: no e-stop in the sim
    with pytest.raises(ValueError, match="executor limits"):
        executor_command("fast")


def test_every_in_process_only_configuration_has_its_baseline_policy() -> None:
    """The torch-free configuration table and the core's baseline policies name the same
    baselines (the evaluation and the replay tool both run them from BASELINE_POLICIES)."""
    from specprune.bench import BASELINE_POLICIES
    from specprune_ros.eval.configurations import IN_PROCESS_ONLY

    assert set(BASELINE_POLICIES) == set(IN_PROCESS_ONLY)
    assert all(name in CONFIGS for name in BASELINE_POLICIES)
