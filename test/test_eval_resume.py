"""specprune-eval --resume in process: a run stopped part way (its journal cut, the last line
torn by the kill) and started again runs only the missing episodes and gives the results of
one uninterrupted run; a journal of another run is refused before anything runs."""
import json
import shutil
from typing import Any, Dict

import pytest

from specprune_ros.eval import evaluate

TASK, EPISODES, HORIZON, SEED = "pick_color", 3, 10, 21
CONFIGS = "unpruned,specprune,random"


def _args(journal, out, *extra: str):
    return ["--policy", "tiny", "--task", TASK, "--episodes", str(EPISODES), "--horizon",
            str(HORIZON), "--seed", str(SEED), "--threads", "1", "--configs", CONFIGS,
            "--hit-every", "1", "--resume", str(journal), "--json", str(out), *extra]


def _outcome(result: Dict[str, Any]) -> Dict[str, Any]:
    """Everything but the timings."""
    keep = ("seed", "success", "steps", "policy_steps", "instruction", "error",
            "kept_visual_tokens", "replans")
    return {"configs": {name: {"episodes": [{k: e.get(k) for k in keep}
                                            for e in c["per_episode"]],
                               "l1": c["action_l1_vs_unpruned"],
                               "kept": c["kept_visual_tokens_mean"],
                               "changes": c["prune_config_changes"]}
                        for name, c in result["configs"].items()},
            "hit_rate": result["hit_rate_layers01_vs_last"],
            "hit_samples": result["hit_rate_samples"],
            "comparisons": result["comparisons"]}


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """One uninterrupted run with a journal: its JSON and its journal's lines."""
    folder = tmp_path_factory.mktemp("resume")
    journal, out = folder / "whole.jsonl", folder / "whole.json"
    assert evaluate.main(_args(journal, out)) == 0
    return json.loads(out.read_text()), journal


def test_the_journal_holds_every_episode_once(whole):
    result, journal = whole
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert "key" in lines[0] and lines[0]["key"]["via"] == "direct"
    pairs = [(e["episode"]["seed"], e["config"]) for e in lines[1:]]
    assert sorted(pairs) == sorted((s, c) for s in range(SEED, SEED + EPISODES)
                                   for c in CONFIGS.split(","))
    # the unpruned episodes sample the hit rate, one sample per policy step
    hits = sum(len(e.get("hit_rates", ())) for e in lines[1:])
    assert hits == result["hit_rate_samples"] > 0
    assert "attempts" not in result


def test_a_stopped_run_resumed_equals_one_uninterrupted_run(whole, tmp_path):
    result, journal = whole
    lines = journal.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"  # 4 episodes done, the 5th torn by the kill
    cut.write_text("\n".join(lines[:5]) + "\n" + lines[5][: len(lines[5]) // 2])
    out = tmp_path / "resumed.json"
    assert evaluate.main(_args(cut, out)) == 0
    resumed = json.loads(out.read_text())
    assert _outcome(resumed) == _outcome(result)
    assert resumed["attempts"] == 2
    entries = [json.loads(line) for line in cut.read_text().splitlines()[1:]]
    assert len(entries) == len(lines) - 1  # the torn line dropped, run again once
    assert [e["attempt"] for e in entries] == [0] * 4 + [1] * (len(entries) - 4)
    # a third start finds every episode done and runs none
    again = tmp_path / "again.json"
    assert evaluate.main(_args(cut, again)) == 0
    assert _outcome(json.loads(again.read_text())) == _outcome(result)
    assert len(cut.read_text().splitlines()) == len(lines)


def test_a_journal_of_another_run_is_refused_before_anything_runs(whole, tmp_path, capsys):
    _, journal = whole
    other = tmp_path / "other.jsonl"
    shutil.copy(journal, other)
    with pytest.raises(SystemExit):
        evaluate.parse_args(_args(other, tmp_path / "x.json", "--l1-every", "2"))
    err = capsys.readouterr().err
    assert "belongs to another run" in err and "l1_every" in err
    assert other.read_text() == journal.read_text()


def test_resume_is_refused_with_ray_workers(tmp_path, capsys):
    with pytest.raises(SystemExit):
        evaluate.parse_args(_args(tmp_path / "j.jsonl", tmp_path / "x.json",
                                  "--workers", "2"))
    assert "Ray workers" in capsys.readouterr().err
