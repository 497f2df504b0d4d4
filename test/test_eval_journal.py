"""The evaluation's resume journal: episodes read back, torn lines, another run refused."""
import json

import pytest

from specprune_ros.eval.eval_journal import Journal
from specprune_ros.eval.eval_results import ConfigRun, EpisodeRecord, StepRecord

KEY = {"policy_hash": "abc", "configs": ["unpruned", "specprune"], "horizon": 150}


def fresh_runs():
    return {c: ConfigRun(c, {}) for c in ("unpruned", "specprune")}


def write_two(path):
    journal = Journal.open(str(path), KEY, fresh_runs())
    steps = [StepRecord(step_ms=50.0, kept_visual_tokens=100, visual_tokens_total=256,
                        mode="fine", visual_tokens_per_layer=[256, 200])]
    journal.record("unpruned", EpisodeRecord(seed=7, success=True, steps=40, policy_steps=1),
                   steps, {"executor": {"holds": 2}}, 12.5)
    journal.record("specprune", EpisodeRecord(seed=7, steps=150, error="timeout"), [],
                   {"executor": {"holds": 5}}, 20.0)
    return journal


def test_a_resumed_run_gets_back_every_episode_and_step(tmp_path):
    path = tmp_path / "run.jsonl"
    write_two(path)
    runs = fresh_runs()
    again = Journal.open(str(path), KEY, runs)
    assert again.done == {(7, "unpruned"), (7, "specprune")}
    assert runs["unpruned"].episodes == [EpisodeRecord(seed=7, success=True, steps=40,
                                                       policy_steps=1)]
    assert runs["unpruned"].steps[0].visual_tokens_per_layer == [256, 200]
    assert runs["specprune"].episodes[0].error == "timeout"
    assert again.wall_s == pytest.approx(32.5)
    assert again.attempt == 1
    again.record("unpruned", EpisodeRecord(seed=8), [], {}, 2.0)
    assert again.wall_s == pytest.approx(34.5)  # what this attempt ran counts too


def test_a_journal_line_without_step_times_gets_them_from_its_step_rows(tmp_path):
    """A journal written before episodes kept their step times resumes with them."""
    path = tmp_path / "run.jsonl"
    write_two(path)
    lines = path.read_text().splitlines()
    old = json.loads(lines[1])
    old["episode"] = {k: v for k, v in old["episode"].items() if k not in ("step_ms", "llm_ms")}
    old["steps"][0]["llm_ms"] = 31.26
    path.write_text("\n".join([lines[0], json.dumps(old), lines[2]]) + "\n")
    runs = fresh_runs()
    Journal.open(str(path), KEY, runs)
    (record,) = runs["unpruned"].episodes
    assert (record.step_ms, record.llm_ms) == ([50.0], [31.3])
    assert runs["specprune"].episodes[0].step_ms == []  # a line with the field: as written


def test_a_fresh_journal_sums_the_wall_time_of_its_own_episodes(tmp_path):
    assert write_two(tmp_path / "run.jsonl").wall_s == pytest.approx(32.5)


def test_counters_are_summed_over_attempts(tmp_path):
    path = tmp_path / "run.jsonl"
    write_two(path)
    again = Journal.open(str(path), KEY, fresh_runs())
    again.record("unpruned", EpisodeRecord(seed=8), [], {"executor": {"holds": 3}}, 1.0)
    # attempt 0 ended at 5 holds, attempt 1 (new processes, from 0) at 3
    assert again.summed_counters("executor") == {"holds": 8}


def test_a_line_torn_by_a_kill_is_dropped_and_that_episode_runs_again(tmp_path):
    path = tmp_path / "run.jsonl"
    write_two(path)
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"config": "unpruned", "episode": {"se')
    runs = fresh_runs()
    again = Journal.open(str(path), KEY, runs)
    assert len(again.done) == 2
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)


def test_a_journal_of_another_run_is_refused_naming_the_difference(tmp_path):
    path = tmp_path / "run.jsonl"
    write_two(path)
    with pytest.raises(ValueError, match="differs in horizon"):
        Journal.open(str(path), dict(KEY, horizon=200), fresh_runs())


def test_a_damaged_line_inside_the_file_is_an_error(tmp_path):
    path = tmp_path / "run.jsonl"
    write_two(path)
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:10]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        Journal.open(str(path), KEY, fresh_runs())


def test_the_key_names_what_changes_an_episode():
    from types import SimpleNamespace

    from specprune_ros.eval.eval_journal import journal_key
    args = SimpleNamespace(policy="tiny", task="libero_object:0", via="ros",
                           configs=["unpruned"], horizon=280, executor_limits="robot",
                           prune=(("layer_depth", 32),), claim=False, gripper_convention="env")
    plain = journal_key(args)
    assert "gripper_convention" not in plain and plain["prune_defaults"] == [["layer_depth", 32]]
    args.gripper_convention = "openvla_oft"
    assert journal_key(args)["gripper_convention"] == "openvla_oft"


def test_a_rerun_with_fewer_seeds_reads_back_only_its_own(tmp_path):
    """Episodes of seeds the run no longer has stay in the file, out of the result."""
    path = tmp_path / "run.jsonl"
    journal = write_two(path)
    journal.record("unpruned", EpisodeRecord(seed=8, success=True), [], {}, 5.0,
                   hit_rates=[0.5, 0.25])
    runs = fresh_runs()
    again = Journal.open(str(path), KEY, runs, seeds=[7])
    assert [e.seed for e in runs["unpruned"].episodes] == [7]
    assert again.done == {(7, "unpruned"), (7, "specprune")}
    assert again.wall_s == pytest.approx(32.5) and again.hit_rates == []
    runs = fresh_runs()
    assert Journal.open(str(path), KEY, runs, seeds=[7, 8]).hit_rates == [0.5, 0.25]
    assert len(path.read_text().splitlines()) == 4  # nothing dropped from the file


def test_a_key_line_torn_by_a_kill_starts_the_journal_afresh(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text(json.dumps({"key": KEY})[:10])
    journal = Journal.open(str(path), KEY, fresh_runs())
    assert journal.done == set()
    assert json.loads(path.read_text().splitlines()[0]) == {"key": KEY}


def test_mean_budget_matching_keys_the_episode_count():
    """With --budget-match mean the baselines' budget is SpecPrune's mean over the whole
    run: a rerun with more episodes is another run; per step it may grow."""
    from specprune_ros.eval import evaluate
    from specprune_ros.eval.eval_journal import journal_key
    base = ["--policy", "tiny", "--episodes", "3", "--configs", "unpruned,specprune,fastv"]
    step = journal_key(evaluate.parse_args(base))
    mean = journal_key(evaluate.parse_args(base + ["--budget-match", "mean"]))
    assert "episodes" not in step and mean["episodes"] == 3
    fixed = journal_key(evaluate.parse_args(base + ["--budget-match", "mean",
                                                    "--baseline-budget", "64"]))
    assert "episodes" not in fixed


def test_each_attempt_records_where_it_ran_once(tmp_path):
    """A journal resumed on another machine or a later commit: the result names each
    attempt's (the key leaves them out, so the resume is allowed)."""
    path = str(tmp_path / "run.jsonl")
    first = Journal.open(path, KEY, fresh_runs(), info={"machine": {"processor": "A"}})
    for seed in (1, 2):
        first.record("unpruned", EpisodeRecord(seed=seed), [], {}, 1.0)
    second = Journal.open(path, KEY, fresh_runs(), info={"machine": {"processor": "B"}})
    assert second.infos == {"0": {"machine": {"processor": "A"}}}
    second.record("specprune", EpisodeRecord(seed=1), [], {}, 1.0)
    lines = [json.loads(line) for line in open(path, encoding="utf-8")]
    assert [("attempt_info" in line) for line in lines[1:]] == [True, False, True]
    third = Journal.open(path, KEY, fresh_runs())
    assert third.infos == {"0": {"machine": {"processor": "A"}},
                           "1": {"machine": {"processor": "B"}}}
    from specprune_ros.eval.configurations import note_attempts
    meta = {}
    note_attempts(meta, third)
    assert meta["attempts"] == 2 and meta["attempt_info"]["1"]["machine"]["processor"] == "B"


def test_a_result_names_the_training_demos_and_the_code_revision(tmp_path):
    from specprune_ros.eval.configurations import code_revision, training_demos
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "training_summary.json").write_text(json.dumps(
        {"demo_files": [["demos/a.hdf5", "d1"], ["demos/b.hdf5", "d2"]]}))
    assert training_demos(str(folder)) == [["demos/a.hdf5", "d1"], ["demos/b.hdf5", "d2"]]
    assert training_demos("tiny") is None
    revision = code_revision()
    if revision is None:
        pytest.skip("not a git checkout: no revision to record")
    assert len(revision.split("+")[0]) == 40 and int(revision[:40], 16) >= 0
