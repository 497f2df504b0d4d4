"""specprune-eval --workers: episodes as Ray tasks give the serial runner's results on the
same seeds (real Ray on this machine; skipped with the reason where ray is missing)."""
import json
from typing import Any, Dict

import pytest

from specprune_ros.eval import evaluate
from specprune_ros.eval.parallel import ray_available, seed_blocks

TASK, EPISODES, HORIZON, SEED = "pick_color", 3, 10, 11
CONFIGS = "unpruned,specprune,fastv"


def test_seed_blocks_are_contiguous_and_cover_every_seed():
    seeds = list(range(100, 111))
    blocks = seed_blocks(seeds, workers=2)
    assert [s for b in blocks for s in b] == seeds
    assert len(blocks) == 4 and all(len(b) == 3 for b in blocks[:3])


def _run(tmp_path, *extra: str) -> Dict[str, Any]:
    out = tmp_path / ("eval%s.json" % "_".join(extra).replace("-", ""))
    code = evaluate.main(["--policy", "tiny", "--task", TASK, "--episodes", str(EPISODES),
                          "--horizon", str(HORIZON), "--seed", str(SEED), "--threads", "1",
                          "--configs", CONFIGS, "--hit-every", "1", "--l1-every", "1",
                          "--json", str(out), *extra])
    assert code == 0
    return json.loads(out.read_text())


def _outcome(result: Dict[str, Any]) -> Dict[str, Any]:
    """Everything but the timings."""
    keep = ("success", "steps", "policy_steps", "instruction", "seed", "error")
    return {
        "configs": {name: {"kept": c["kept_visual_tokens_mean"],
                           "l1": c["action_l1_vs_unpruned"], "changes": c["prune_config_changes"],
                           "episodes": [{k: e.get(k) for k in keep} for e in c["per_episode"]]}
                    for name, c in result["configs"].items()},
        "hit_rate": result["hit_rate_layers01_vs_last"],
        "hit_samples": result["hit_rate_samples"],
    }


@pytest.mark.skipif(not ray_available(), reason="ray is not installed: the serial runner is "
                    "the default and the only path here")
@pytest.mark.parametrize("budget_match", ["step", "mean"])
def test_ray_workers_reproduce_the_serial_run(tmp_path, budget_match):
    """Per step (the default) every block matches its own episodes; with the mean, FastV
    runs in a second round at SpecPrune's mean over every block."""
    serial = _run(tmp_path, "--budget-match", budget_match)
    parallel = _run(tmp_path, "--budget-match", budget_match, "--workers", "2")
    assert parallel["machine"]["ray_workers"] == 2
    assert parallel["seeds"] == serial["seeds"] == list(range(SEED, SEED + EPISODES))
    assert _outcome(parallel) == _outcome(serial)
    fastv, spec = serial["configs"]["fastv"], serial["configs"]["specprune"]
    if budget_match == "mean":
        assert fastv["kept_visual_tokens_mean"] == round(spec["kept_visual_tokens_mean"])
    else:  # the same first frame of every episode: SpecPrune's count exactly
        assert [e["kept_visual_tokens"][0] for e in fastv["per_episode"]] == [
            e["kept_visual_tokens"][0] for e in spec["per_episode"]]


def test_workers_are_refused_over_ros(capsys):
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--policy", "tiny", "--via", "ros", "--workers", "2"])
    assert "--via direct" in capsys.readouterr().err
