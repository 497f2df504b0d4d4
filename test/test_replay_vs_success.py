"""replay_vs_success on evaluation and replay JSONs already in its work folder (nothing is
run): one point per setting, success paired with unpruned by seed, the rank correlation."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import pytest

from specprune_ros.eval import replay, replay_vs_success as rvs

SEEDS = list(range(100_000, 100_010))


def run(configs: Dict[str, List[bool]]) -> Dict:
    return {"seeds": SEEDS, "via": "direct", "horizon": 150, "policy": "shipped",
            "configs": {name: {"action_l1_vs_unpruned": 0.01 * sum(not s for s in ok),
                               "per_episode": [{"seed": seed, "success": s}
                                               for seed, s in zip(SEEDS, ok)]}
                        for name, ok in configs.items()}}


def fails(n: int) -> List[bool]:
    """The first ``n`` seeds fail, the rest succeed."""
    return [i >= n for i in range(len(SEEDS))]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """Settings whose replay L1 grows with the seeds they lose (unpruned loses seed 0)."""
    lost = {"specprune keep_scale 0.25": 4, "specprune keep_scale 0.5": 2,
            "specprune keep_scale 1": 1, "specprune keep_scale 2": 1, "no_layer_pruning": 1,
            "fastv": 3, "random": 6}
    main = {"unpruned": fails(1)}
    main.update({s.config: fails(lost[s.label]) for s in rvs.SETTINGS if s.run == rvs.MAIN_RUN})
    (tmp_path / "eval_main.json").write_text(json.dumps(run(main)))
    for s in rvs.SETTINGS:
        if s.run != rvs.MAIN_RUN:
            (tmp_path / f"eval_{s.run}.json").write_text(json.dumps(
                run({"specprune": fails(lost[s.label])})))
    replay = {"bag": "bags/demo", "steps": 210, "episodes": 6, "configs": {
        s.replay: {"action_l1_vs_unpruned": 0.01 * lost[s.label] + 0.001 * i,
                   "kept_visual_tokens_mean": 100.0} for i, s in enumerate(rvs.SETTINGS)}}
    (tmp_path / "replay.json").write_text(json.dumps(replay))
    return tmp_path


def test_one_point_per_setting_paired_with_unpruned_by_seed(work: Path) -> None:
    out = work / "study.json"
    assert rvs.main(["--bag", "bags/demo", "--work", str(work), "--json", str(out),
                     "--plot", str(work / "study.png")]) == 0
    result = json.loads(out.read_text())
    points = {p["setting"]: p for p in result["points"]}
    assert list(points) == [s.label for s in rvs.SETTINGS]
    assert result["unpruned"]["successes"] == 9
    random = points["random"]
    assert (random["successes"], random["episodes"]) == (4, 10)
    # unpruned lost seed 0 too: 5 seeds only unpruned solved, none only random did
    assert random["vs_unpruned"]["only_second"] == 5 and random["vs_unpruned"]["only_first"] == 0
    assert random["vs_unpruned"]["difference"] == pytest.approx(-0.5)
    assert points["specprune keep_scale 1"]["vs_unpruned"]["difference"] == 0.0
    # more replay L1, fewer successes (three settings tie at 9/10)
    assert -1.0 < result["spearman_replay_l1_vs_success"] < -0.9
    assert "--prune=keep_scale=0.25" in result["commands"]["keep_scale_0.25"]
    assert (work / "study.png").stat().st_size > 10_000


def test_keep_scale_settings_name_the_replay_sweep_and_the_eval_file() -> None:
    quarter = rvs.SETTINGS[0]
    assert (quarter.run, quarter.replay) == ("keep_scale_0.25", "specprune[keep_scale=0.25]")
    two = next(s for s in rvs.SETTINGS if s.prune.get("keep_scale") == 2)
    assert (two.run, two.replay) == ("keep_scale_2", "specprune[keep_scale=2]")
    # the names specprune-replay gives the configurations of the study's replay command
    command = rvs.replay_command(rvs.parse_args(["--bag", "b"]), "out.json")
    names = {c.name for c in replay.configurations(
        command[command.index("--configs") + 1].split(","),
        replay.parse_sets([command[command.index("--set") + 1]]))}
    assert {s.replay for s in rvs.SETTINGS} <= names


def test_spearman_handles_ties_and_constant_input() -> None:
    assert rvs.spearman([1, 2, 3, 4], [10, 20, 20, 40]) == pytest.approx(0.9486833)
    assert rvs.spearman([1, 2, 3], [5, 5, 5]) is None


def test_recorded_study_correlations_recompute_from_its_points() -> None:
    """docs/replay_vs_success.json's figures (-0.95 vs success, +0.86 vs closed-loop L1)
    come out of scipy's spearmanr on the JSON's own rows."""
    result = json.loads((Path(__file__).resolve().parents[1] / "docs"
                         / "replay_vs_success.json").read_text())
    points = result["points"]
    l1 = [p["replay_l1_vs_unpruned"] for p in points]
    success = rvs.spearman(l1, [p["success_rate"] for p in points])
    loop = rvs.spearman(l1, [p["closed_loop_l1_vs_unpruned"] or 0.0 for p in points])
    assert success == pytest.approx(result["spearman_replay_l1_vs_success"], abs=1e-12)
    assert round(success, 2) == -0.95
    assert loop == pytest.approx(result["spearman_replay_l1_vs_closed_loop_l1"], abs=1e-12)
    assert round(loop, 2) == 0.86
    assert rvs.spearman(l1, [p["vs_unpruned"]["difference"] for p in points]) == \
        pytest.approx(result["spearman_replay_l1_vs_paired_difference"], abs=1e-12)
