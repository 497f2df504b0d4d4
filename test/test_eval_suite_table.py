"""The per-suite table (the paper's Table 1 shape) from result JSONs, by one command."""
import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from specprune_ros.eval import suite_table
from specprune.types import MODE_COARSE, MODE_FINE
from specprune_ros.eval.eval_results import ConfigRun, EpisodeRecord, StepRecord, summarize
from specprune_ros.eval.eval_stats import paired_comparison


def _result(task: str, outcomes: Dict[str, list], step_ms: Dict[str, float],
            claim: bool = False, steps: int = 3, first_seed: int = 100,
            **meta: Any) -> Dict[str, Any]:
    """A JSON as written before episodes kept their step times: per configuration
    ``steps`` policy steps of ``step_ms[name]`` each, none in ``per_episode``."""
    runs = {}
    for name, wins in outcomes.items():
        run = ConfigRun(name, {})
        run.episodes = [EpisodeRecord(seed=first_seed + i, success=w)
                        for i, w in enumerate(wins)]
        run.steps = [StepRecord(step_ms=step_ms[name])] * steps
        runs[name] = run
    result = summarize(runs, dict(meta, task=task, claim=claim), [])
    for block in result["configs"].values():
        for episode in block["per_episode"]:
            del episode["step_ms"], episode["llm_ms"]
    return result


def _timed_result(task: str, episodes: Dict[str, List[Tuple[bool, List[float]]]]
                  ) -> Dict[str, Any]:
    """A JSON whose episodes keep their step times: per configuration (success, the step
    times of its policy steps) per episode, on seeds 100, 101, ..."""
    runs = {}
    for name, rows in episodes.items():
        run = runs[name] = ConfigRun(name, {})
        for i, (success, times) in enumerate(rows):
            record = EpisodeRecord(seed=100 + i, success=success)
            for ms in times:
                step = StepRecord(step_ms=ms, llm_ms=ms / 2)
                record.note_step(step)
                run.steps.append(step)
            run.episodes.append(record)
    return summarize(runs, {"task": task, "checkpoint_hash": "abc"}, [])


def test_llm_speedup_and_fine_share_per_suite(tmp_path: Path, capsys) -> None:
    """Task a: unpruned LLM 40 ms, specprune 10 ms (4x) while its whole step is 2x; task b:
    2x and 2x: the suite's LLM speedup is their mean, 3x. Fine mode: 1 of 2 steps on a,
    3 of 4 on b: 4 of 6 pooled. Layer pruning acted at 3, 5 on a and 5, 8 on b."""
    results = []
    for task, llm, fine in (("sim_goal_0", 10.0, [True, False]),
                            ("sim_goal_1", 20.0, [True, True, True, False])):
        runs = {}
        for name, ms, lm, modes in (("unpruned", 80.0, 40.0, [False] * len(fine)),
                                    ("specprune", 40.0, llm, fine)):
            run = runs[name] = ConfigRun(name, {})
            record = EpisodeRecord(seed=1, success=True)
            for is_fine in modes:
                mode = MODE_FINE if is_fine else MODE_COARSE
                step = StepRecord(step_ms=ms, llm_ms=lm, mode=mode)
                record.note_step(step)
                run.steps.append(step)
            run.episodes.append(record)
        results.append(summarize(runs, {"task": task, "checkpoint_hash": "abc"}, []))
        results[-1]["configs"]["specprune"]["layer_pruning_acted"] = [3, 5] if llm == 10.0 \
            else [5, 8]
    assert suite_table.main([_write(tmp_path, f"{i}.json", r)
                             for i, r in enumerate(results)]) == 0
    lines = _table_lines(capsys.readouterr().out)
    assert lines["specprune"] == (
        "| specprune | 100.0 | 100.0 | 40.0 | 2.00x | 3.00x | 66.7 | 3,5,8 |")
    assert lines["unpruned"].endswith("| 1.00x | 1.00x | - | - |")  # no modes: not 0 %


def _write(tmp_path: Path, name: str, result: Dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(result))
    return str(path)


def test_table_has_success_per_suite_average_and_speedup(tmp_path: Path, capsys) -> None:
    a = _result("suite_a", {"unpruned": [1, 1, 1, 0], "specprune": [1, 1, 0, 0],
                            "random": [0, 0, 0, 0]},
                {"unpruned": 40.0, "specprune": 20.0, "random": 25.0})
    b = _result("suite_b", {"unpruned": [1, 1, 0, 0], "specprune": [1, 1, 1, 0]},
                {"unpruned": 30.0, "specprune": 20.0})
    ablation = _result("suite_b", {"no_local": [0, 1, 0, 0]}, {"no_local": 19.0})
    named = (("a.json", a), ("b.json", b), ("b_abl.json", ablation))
    paths = [_write(tmp_path, n, r) for n, r in named]
    md, png = tmp_path / "t.md", tmp_path / "t.png"
    assert suite_table.main(paths + ["--md", str(md), "--plot", str(png)]) == 0
    text = md.read_text()
    assert capsys.readouterr().out == text
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()
             if line.startswith("| ")}
    # unpruned: 75 % and 50 %, average 62.5 %, the reference of the speedup; step times
    # from JSONs without per-step times: marked
    assert lines["unpruned"] == "| unpruned | 75.0 | 50.0 | 62.5 | 35.0 * | 1.00x | - | - | - |"
    # specprune: 50 % and 75 %; speedup = mean(40/20, 30/20) = 1.75x
    assert lines["specprune"] == (
        "| specprune | 50.0 | 75.0 | 62.5 | 20.0 * | 1.75x | - | 0.0 | - |")
    # random ran on one suite only: no average; an ablation without unpruned: no speedup
    assert lines["random"] == "| random | 0.0 | - | - | - | - | - | - | - |"
    assert lines["no_local"] == "| no_local | - | 25.0 | - | - | - | - | - | - |"
    assert "| suite_a | specprune - unpruned | -25.0 pp |" in text
    assert "| suite_b | specprune - unpruned | +25.0 pp |" in text
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_duplicates_and_mixed_claims_are_refused(tmp_path: Path, capsys) -> None:
    a = _result("suite_a", {"unpruned": [1]}, {"unpruned": 1.0})
    with pytest.raises(SystemExit):
        suite_table.main([_write(tmp_path, "1.json", a), _write(tmp_path, "2.json", a)])
    assert "appears in two results" in capsys.readouterr().err
    claim = _result("suite_b", {"unpruned": [1]}, {"unpruned": 1.0}, claim=True)
    with pytest.raises(SystemExit):
        suite_table.main([_write(tmp_path, "1.json", a), _write(tmp_path, "3.json", claim)])
    assert "mixed" in capsys.readouterr().err


def _table_lines(text: str) -> Dict[str, str]:
    return {line.split(" | ")[0].strip("| "): line for line in text.splitlines()
            if line.startswith("| ")}


def test_the_tasks_of_a_suite_pool_into_one_column_with_pooled_pairs(
        tmp_path: Path, capsys) -> None:
    """--via ros writes one JSON per LIBERO task: libero_object:0 and :3 make one column;
    success over the 8 pooled episodes, the paired comparison on the 8 pooled pairs, the
    step time weighted by policy steps."""
    t0 = _result("libero_object:0", {"unpruned": [1, 1, 0, 0], "specprune": [1, 0, 0, 0]},
                 {"unpruned": 40.0, "specprune": 20.0}, steps=1, checkpoint_hash="abc")
    t3 = _result("libero_object:3", {"unpruned": [1, 1, 1, 1], "specprune": [1, 1, 1, 0]},
                 {"unpruned": 100.0, "specprune": 25.0}, steps=3, checkpoint_hash="abc")
    # another suite may use another checkpoint (the released ones are per suite)
    sp = _result("libero_spatial:1", {"unpruned": [1, 0], "specprune": [1, 1]},
                 {"unpruned": 30.0, "specprune": 15.0}, checkpoint_hash="other")
    paths = [_write(tmp_path, f"{i}.json", r) for i, r in enumerate((t0, t3, sp))]
    assert suite_table.main(paths) == 0
    text = capsys.readouterr().out
    lines = _table_lines(text)
    assert lines["configuration"] == ("| configuration | libero_spatial | libero_object | "
                                      "average | step ms (median) | speedup | LLM speedup | "
                                      "fine % | layer pruning at |")
    # unpruned 6/8, 1/2; step (40 * 1 + 100 * 3) / 4 = 85 and 30: mean 57.5 (these JSONs
    # hold no per-step times: weighted, marked)
    assert lines["unpruned"] == "| unpruned | 50.0 | 75.0 | 62.5 | 57.5 * | 1.00x | - | - | - |"
    # specprune 4/8, 2/2; step (20 + 75) / 4 = 23.75 and 15: mean 19.375 -> 19.4;
    # speedup: libero_object mean(2.0, 4.0) = 3.0, libero_spatial 2.0, mean 2.5
    assert lines["specprune"] == (
        "| specprune | 100.0 | 50.0 | 75.0 | 19.4 * | 2.50x | - | 0.0 | - |")
    assert ("* per-task-weighted instead, where a JSON holds no per-step times (written before "
            "they were recorded)") in text
    assert "libero_spatial 1 task, 2 episodes; libero_object 2 tasks, 8 episodes" in text
    pooled = suite_table.paired(suite_table.collect([t0, t3, sp])["libero_object"],
                                "specprune", "unpruned")[0]
    assert pooled == paired_comparison([1, 0, 0, 0, 1, 1, 1, 0], [1, 1, 0, 0, 1, 1, 1, 1])
    assert (pooled["only_first"], pooled["only_second"], pooled["episodes"]) == (0, 2, 8)
    lo, hi = pooled["difference_ci95"]
    assert (f"| libero_object | specprune - unpruned | -25.0 pp | {100 * lo:+.1f} to "
            f"{100 * hi:+.1f} pp | {pooled['mcnemar_p']:.3f} | 0 / 2 | 8 |") in text


def test_the_tabletop_suites_pool_their_tasks_too(tmp_path: Path, capsys) -> None:
    """The tabletop pipeline writes one JSON per task (sim_object_0, sim_object_2, ...):
    one column per suite in the paper's order, pick_color (a task of no suite) its own,
    last."""
    results = [_result(task, {"unpruned": wins}, {"unpruned": 10.0}, checkpoint_hash="abc")
               for task, wins in (("sim_object_0", [1, 0]), ("sim_object_2", [1, 1]),
                                  ("sim_long_1", [0, 0]), ("pick_color", [1, 1]))]
    paths = [_write(tmp_path, f"{i}.json", r) for i, r in enumerate(results)]
    assert suite_table.main(paths) == 0
    lines = _table_lines(capsys.readouterr().out)
    assert lines["configuration"].startswith(
        "| configuration | sim_object | sim_long | pick_color | average |")
    assert lines["unpruned"].startswith("| unpruned | 75.0 | 0.0 | 100.0 |")
    assert suite_table.suite_and_tasks("sim_object_2") == ("sim_object", {2})


def test_step_ms_is_the_pooled_median_of_every_step_when_episodes_keep_them(
        tmp_path: Path, capsys) -> None:
    """libero_object:0 unpruned 3 steps of 10 ms, :3 2 steps of 100 ms: the pooled median is
    10 ms where the per-task-weighted one was (3 * 10 + 2 * 100) / 5 = 46; specprune
    2 x 5 ms and 3 x 50 ms: 50 ms (weighted: 32). Speedup per task 10/5 and 100/50."""
    t0 = _timed_result("libero_object:0", {"unpruned": [(True, [10.0, 10.0]), (False, [10.0])],
                                           "specprune": [(True, [5.0]), (True, [5.0])]})
    t3 = _timed_result("libero_object:3", {"unpruned": [(True, [100.0, 100.0])],
                                           "specprune": [(True, [50.0, 50.0, 50.0])]})
    assert t3["configs"]["specprune"]["per_episode"][0]["llm_ms"] == [25.0, 25.0, 25.0]
    old = json.loads(json.dumps(t3))  # as written before the episodes kept their times
    for episode in old["configs"]["specprune"]["per_episode"]:
        del episode["step_ms"]
    rows = {}
    for second in (t3, old):
        paths = [_write(tmp_path, f"{i}.json", r) for i, r in enumerate((t0, second))]
        assert suite_table.main(paths) == 0
        text = capsys.readouterr().out
        rows[id(second)] = (_table_lines(text), text)
    lines, text = rows[id(t3)]
    assert lines["unpruned"] == "| unpruned | 66.7 | 66.7 | 10.0 | 1.00x | 1.00x | - | - |"
    assert lines["specprune"] == "| specprune | 100.0 | 100.0 | 50.0 | 2.00x | 2.00x | 0.0 | - |"
    assert "Step ms: the median of every policy step of a suite's episodes" in text
    assert "per-task-weighted" not in text
    # one task's JSON without the times: that suite's cell of that configuration falls back
    lines, text = rows[id(old)]
    assert lines["unpruned"] == "| unpruned | 66.7 | 66.7 | 10.0 | 1.00x | 1.00x | - | - |"
    assert lines["specprune"] == "| specprune | 100.0 | 100.0 | 32.0 * | 2.00x | 2.00x | 0.0 | - |"
    assert "weighted by policy steps over a suite's tasks (libero_object specprune)" in text


def test_a_task_whose_seeds_differ_is_not_paired_and_says_why(tmp_path: Path, capsys) -> None:
    a = _result("libero_goal:0", {"unpruned": [1, 0]}, {"unpruned": 10.0})
    b = _result("libero_goal:0", {"specprune": [1, 1]}, {"specprune": 5.0}, first_seed=500)
    assert suite_table.main([_write(tmp_path, "a.json", a), _write(tmp_path, "b.json", b)]) == 0
    text = capsys.readouterr().out
    assert "specprune - unpruned |" not in text
    assert "Not paired: libero_goal specprune - unpruned: seeds differ on libero_goal:0." in text


@pytest.mark.parametrize("first, second, message", [
    ({"checkpoint_hash": "abc"}, {"checkpoint_hash": "def"}, "different policies (abc, def)"),
    ({"policy": "tiny"}, {"policy": "oft-cpu"}, "different policies (preset oft-cpu, preset"),
    ({"via": "direct"}, {"via": "ros"}, "different runners (direct, ros)"),
    ({"claim": True}, {"claim": False}, "claim and development results mixed"),
])
def test_a_suite_pools_one_policy_and_one_kind_of_run(tmp_path: Path, capsys, first, second,
                                                      message) -> None:
    one = _result("libero_10:0", {"unpruned": [1]}, {"unpruned": 1.0}, **first)
    two = _result("libero_10:1", {"unpruned": [0]}, {"unpruned": 1.0}, **second)
    with pytest.raises(SystemExit):
        suite_table.main([_write(tmp_path, "1.json", one), _write(tmp_path, "2.json", two)])
    assert message in capsys.readouterr().err


def test_a_task_counted_twice_in_a_suite_is_refused(tmp_path: Path, capsys) -> None:
    every = _result("libero_object:all", {"unpruned": [1] * 10}, {"unpruned": 1.0})
    one = _result("libero_object:3", {"unpruned": [0]}, {"unpruned": 1.0})
    with pytest.raises(SystemExit):
        suite_table.main([_write(tmp_path, "1.json", every), _write(tmp_path, "2.json", one)])
    assert "libero_object:3: configuration unpruned appears in two results" in (
        capsys.readouterr().err)


def test_an_ablation_run_pairs_each_ablation_with_specprune_and_has_its_speedup(
        tmp_path: Path, capsys) -> None:
    """The ablations run beside unpruned and SpecPrune (libero_pipeline.sh ABLATIONS):
    each one's speedup is measured in the same run, its success paired with SpecPrune's."""
    abl = _result("suite_a", {"unpruned": [1, 1, 1, 0], "specprune": [1, 1, 0, 0],
                              "no_layer_pruning": [1, 0, 0, 0]},
                  {"unpruned": 40.0, "specprune": 20.0, "no_layer_pruning": 25.0})
    assert "no_layer_pruning_vs_specprune" in abl["comparisons"]
    md = tmp_path / "t.md"
    assert suite_table.main([_write(tmp_path, "abl.json", abl), "--md", str(md)]) == 0
    text = md.read_text()
    capsys.readouterr()
    row = next(line for line in text.splitlines() if line.startswith("| no_layer_pruning |"))
    assert " 1.60x " in row  # 40 / 25, side by side
    assert "| suite_a | no_layer_pruning - specprune | -25.0 pp |" in text
