"""scripts/libero_pipeline.sh as a plan (DRY_RUN=1 prints each command instead of running
it): the stages it runs by default, how a suite's paired episodes are split over its tasks,
what it skips on a rerun, and that the claim runs only when named, on the fixed initial
states fixed in the script."""
import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "libero_pipeline.sh")
TABLETOP = os.path.join(REPO, "scripts", "tabletop_pipeline.sh")

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(REPO, ".venv", "bin", "python")),
                                reason="needs the project venv (scripts/setup.sh)")


def _plan(tmp_path, *stages, script=SCRIPT, **env):
    # an empty KEEP_DIR unless a test sets one: the plan must not depend on which runs
    # this checkout has kept
    full = dict(os.environ, DRY_RUN="1", EVAL=str(tmp_path / "eval"),
                CLAIM_DIR=str(tmp_path / "claim"), KEEP_DIR=str(tmp_path / "none"))
    full.update(env)
    done = subprocess.run(["bash", script, *stages], env=full, cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return [line[len("DRY_RUN: "):] for line in done.stdout.splitlines()
            if line.startswith("DRY_RUN: ")]


def _evaluations(commands):
    """(task, episodes, configs, rest of the command) of each evaluate command."""
    out = []
    for cmd in commands:
        if "specprune_ros.eval.evaluate" in cmd:
            task = re.search(r"--task (\S+)", cmd).group(1)
            episodes = int(re.search(r"--episodes (\d+)", cmd).group(1))
            configs = re.search(r"--configs (\S+)", cmd).group(1)
            out.append((task, episodes, configs, cmd))
    return out


def test_the_default_run_records_trains_evaluates_and_never_claims(tmp_path):
    commands = _plan(tmp_path)
    recorders = [c for c in commands if "libero_demos" in c]
    assert sorted({re.search(r"--suite (\S+)", c).group(1) for c in recorders}) == [
        "libero_10", "libero_goal", "libero_object", "libero_spatial"]
    assert "env DEMOS=demos/libero RUN=runs/libero_deep bash scripts/train_libero.sh" in commands
    evals = _evaluations(commands)
    assert evals and not any("--claim" in cmd for *_, cmd in evals)
    assert all("--seed 500000" in cmd for *_, cmd in evals)


def test_each_suite_gets_at_least_100_paired_episodes_split_over_its_tasks(tmp_path):
    main = [e for e in _evaluations(_plan(tmp_path, "evaluate"))
            if e[2] == "unpruned,specprune,fastv,random"]
    per_suite = {}
    for task, episodes, _, _ in main:
        suite = task.split(":")[0]
        per_suite.setdefault(suite, []).append(episodes)
    # 9 / 10 / 8 / 4 tasks with experts: 12 / 10 / 13 / 25 episodes each
    assert {s: (len(v), v[0]) for s, v in per_suite.items()} == {
        "libero_spatial": (9, 12), "libero_object": (10, 10), "libero_goal": (8, 13),
        "libero_10": (4, 25)}
    assert all(sum(v) >= 100 for v in per_suite.values())
    # ablations: 50 per suite by default; ABLATION_EPISODES=0 runs the main ones only
    every = _evaluations(_plan(tmp_path, "evaluate"))
    assert any("no_layer_pruning" in configs for _, _, configs, _ in every)
    main_only = _evaluations(_plan(tmp_path, "evaluate", ABLATION_EPISODES="0"))
    assert sorted(main_only) == sorted(main)  # two jobs side by side: either order


def test_every_evaluation_journals_its_episodes_beside_its_json(tmp_path):
    """A stop in the middle of a task (the end of a session) costs at most the episodes
    that were running: each command resumes from the journal named after its JSON."""
    plan = _plan(tmp_path, "evaluate", "ros", "attention", "claim")
    evals = _evaluations(plan)
    assert {"main", "ablations", "ros", "attention", "claim"} == {
        re.search(r"--json \S+/(\w+?)_", cmd).group(1) for *_, cmd in evals}
    for *_, cmd in evals:
        out = re.search(r"--json (\S+)\.json\.tmp", cmd).group(1)
        assert f"--resume {out}.jsonl" in cmd
        # the action deviation is sampled in process only (the ROS runner has none)
        assert ("--l1-every 4" in cmd) == ("--via ros" not in cmd)
        # once the JSON is in place its journal goes: a deleted JSON reruns its task (two
        # tasks run side by side, so another's lines may come between the two)
        moved = plan.index(f"mv {out}.json.tmp {out}.json")
        assert f"rm -f {out}.jsonl" in plan[moved + 1:]


def test_budget_match_reaches_every_in_process_evaluation(tmp_path):
    """BUDGET_MATCH=compute is passed to every in-process evaluation (the baselines' budget
    rule), never to the ROS runner (which runs no baseline); the default is step."""
    for rule in ("step", "compute"):
        env = {} if rule == "step" else {"BUDGET_MATCH": rule}
        cmds = [cmd for *_, cmd in _evaluations(_plan(tmp_path, "evaluate", "ros", **env))]
        assert {"--via ros" in cmd for cmd in cmds} == {True, False}  # both runners
        for cmd in cmds:
            assert (f"--budget-match {rule}" in cmd) == ("--via ros" not in cmd)


def test_the_table_stage_writes_each_suite_and_table_1_over_every_suite(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "ablations_sim_goal_task00.json").write_text("{}")
    tables = [c for c in _plan(tmp_path, "table", script=TABLETOP) if "suite_table" in c]
    suites = ("sim_spatial", "sim_object", "sim_goal", "sim_long")
    assert [re.search(r"--md \S+/(\S+)\.md", c).group(1) for c in tables] == [
        *(f"table_main_{s}" for s in suites), "table_main", "table_ablations"]
    assert all(f"main_{s}_task*.json" in tables[4] for s in suites)


def _fine_tune(extra_demos, run):
    """The fine-tune command of a tabletop data-fix stage: the headline's demos, heads and
    checkpoint, plus ``extra_demos``, into ``run``."""
    return (f"env DEMOS=demos/tabletop,demos/tabletop_paired,{extra_demos} RUN={run} "
            "STEPS=2000 bash scripts/train_libero.sh --init runs/tabletop_grounded/checkpoint "
            "--aux-named 0.2 --lr 3e-4 --warmup-steps 50")


def _refused(script, stage, **env):
    """stderr of a stage the script refuses (exit status 2)."""
    done = subprocess.run(["bash", script, stage], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, DRY_RUN="1", **env), timeout=60)
    assert done.returncode == 2, done.stdout
    return done.stderr


def test_the_takeover_stage_records_every_task_then_fine_tunes_on_both_demo_sets(tmp_path):
    plan = _plan(tmp_path, "takeover", script=TABLETOP, TAKEOVER_PER_TASK="20")
    recorders = [c for c in plan if "takeover_demos" in c]
    # breadth first, one shard of every suite per round, driven by the trained policy
    assert [re.search(r"--per-task (\d+)", c).group(1) for c in recorders] == ["10"] * 4 + [
        "20"] * 4
    assert all("--policy runs/tabletop_grounded/checkpoint" in c and "--seed 70000" in c
               and "--out demos/tabletop_takeover" in c for c in recorders)
    # the headline's data and heads, plus the takeover demos
    assert plan[-2:] == [_fine_tune("demos/tabletop_takeover", "runs/tabletop_grounded_takeover"),
                         "trained runs/tabletop_grounded_takeover"]
    # not part of the default chain, and LIBERO's suites have no takeover recorder
    assert not any("takeover_demos" in c or "tabletop_grounded_takeover" in c
                   for c in _plan(tmp_path, script=TABLETOP))
    assert "tabletop suites only" in _refused(SCRIPT, "takeover")


def test_the_contrast_stage_records_shared_scenes_on_new_seeds_then_fine_tunes(tmp_path):
    plan = _plan(tmp_path, "contrast", script=TABLETOP)
    recorders = [c for c in plan if "tabletop_demos" in c]
    # spatial, object and long (not goal: its words are read), breadth first, shared scenes
    suites = [re.search(r"--suite (\S+)", c).group(1) for c in recorders]
    assert sorted(suites) == sorted(["sim_spatial", "sim_object", "sim_long"] * 2)
    assert [re.search(r"--per-task (\d+)", c).group(1) for c in recorders] == ["10"] * 3 + [
        "20"] * 3
    # seeds after the paired demos' (80000 + 1000 per shard, two shards): no scene reused
    assert all("--seed 82000" in c and "--shared-scenes" in c
               and "--out demos/tabletop_contrast" in c for c in recorders)
    assert plan[-2:] == [_fine_tune("demos/tabletop_contrast", "runs/tabletop_grounded_contrast"),
                         "trained runs/tabletop_grounded_contrast"]
    assert not any("tabletop_contrast" in c for c in _plan(tmp_path, script=TABLETOP))
    assert "tabletop suites only" in _refused(SCRIPT, "contrast")
    assert "CONTRAST_PER_TASK=15" in _refused(TABLETOP, "contrast", CONTRAST_PER_TASK="15")


def test_the_tabletop_headline_records_shared_scenes_and_trains_with_the_named_head(tmp_path):
    """The tabletop recipe: every task recorded again on shared scenes (each scene under
    every instruction of its suite), trained on with the rest, the named-object head on;
    LIBERO's has neither."""
    plan = _plan(tmp_path, "record", "train", script=TABLETOP)
    paired = [c for c in plan if "--shared-scenes" in c]
    rounds = [(re.search(r"--per-task (\d+)", c).group(1),
               re.search(r"--suite (\S+) --tasks (\S+)", c).groups()) for c in paired]
    # breadth first: every suite's first shard, then every suite's second (two jobs side
    # by side print in either order within a round)
    suites = [("sim_goal", "0-3"), ("sim_long", "0-2"), ("sim_object", "0-3"),
              ("sim_spatial", "0-3")]
    assert [per for per, _ in rounds] == ["10"] * 4 + ["20"] * 4
    assert sorted(item for _, item in rounds[:4]) == sorted(item for _, item in rounds[4:]) \
        == suites
    assert all("--seed 80000" in c and "--out demos/tabletop_paired --shared-scenes" in c
               for c in paired)
    # after every shard of the main demos
    assert plan.index(paired[0]) > max(i for i, c in enumerate(plan) if "--seed 10000" in c)
    assert plan[-2:] == ["env DEMOS=demos/tabletop,demos/tabletop_paired "
                         "RUN=runs/tabletop_grounded bash scripts/train_libero.sh "
                         "--aux-named 0.2", "trained runs/tabletop_grounded"]
    plan = _plan(tmp_path, "record", "train", script=TABLETOP, PAIRED_RECORD="")
    assert plan[-2] == ("env DEMOS=demos/tabletop RUN=runs/tabletop_grounded bash "
                        "scripts/train_libero.sh --aux-named 0.2")
    assert not any("--shared-scenes" in c for c in plan)
    assert not any("--aux-named" in c or "--shared-scenes" in c for c in _plan(tmp_path))
    done = subprocess.run(["bash", TABLETOP, "record"], cwd=REPO, capture_output=True,
                          text=True, env=dict(os.environ, DRY_RUN="1", PAIRED_PER_TASK="15"),
                          timeout=60)
    assert done.returncode == 2 and "PAIRED_PER_TASK=15 must be a positive multiple" in done.stderr


def _train_state(path, step, total):
    torch = pytest.importorskip("torch")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": step, "total": total}, path)


def test_keep_copies_the_state_of_a_running_run_and_the_checkpoint_of_a_finished_one(tmp_path):
    run = tmp_path / "runs" / "tabletop_grounded"
    _train_state(run / "train_state.pt", 1500, 6000)
    env = dict(RUN=str(run), KEEP_DIR=str(tmp_path / "kept"))
    kept = tmp_path / "kept" / "tabletop_grounded"
    plan = _plan(tmp_path, "keep", script=TABLETOP, **env)
    assert plan == [f"mkdir -p {kept}", f"cp {run}/train_state.pt {kept}/train_state.pt.tmp",
                    f"mv {kept}/train_state.pt.tmp {kept}/train_state.pt"]
    _train_state(run / "train_state.pt", 6000, 6000)

    def refused(reason):
        done = subprocess.run(["bash", TABLETOP, "keep"], cwd=REPO, capture_output=True,
                              text=True, env=dict(os.environ, DRY_RUN="1", **env), timeout=60)
        return done.returncode == 2 and reason in done.stderr

    assert refused("is finished but has no checkpoint")  # nothing deleted before the copy
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "model.safetensors").write_bytes(b"weights")
    plan = _plan(tmp_path, "keep", script=TABLETOP, **env)
    assert plan == [f"mkdir -p {kept}", f"rm -rf {kept}/checkpoint.tmp",
                    f"cp -r {run}/checkpoint {kept}/checkpoint.tmp",
                    f"rm -rf {kept}/checkpoint {kept}/train_state.pt",
                    f"mv {kept}/checkpoint.tmp {kept}/checkpoint"]
    (run / "train_state.pt").unlink()
    assert refused("has no train_state.pt")


def _train_libero(tmp_path, run, **env):
    demos = tmp_path / "demos"
    demos.mkdir(exist_ok=True)
    (demos / "shard.hdf5.partial").write_text("")
    return subprocess.run(["bash", os.path.join(REPO, "scripts", "train_libero.sh")],
                          cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, RUN=str(run), DEMOS=str(demos), **env))


def test_training_resumes_from_the_kept_state_when_the_run_has_none(tmp_path):
    """A new checkout has no runs/: train_libero.sh starts from the committed state in
    KEEP_DIR/<run name>. (The demo folder holds an unfinished shard, so the script stops
    right after the copy.)"""
    kept = tmp_path / "kept" / "tabletop_grounded"
    _train_state(kept / "train_state.pt", 1500, 6000)
    run = tmp_path / "runs" / "tabletop_grounded"
    done = _train_libero(tmp_path, run, KEEP_DIR=str(tmp_path / "kept"))
    assert "resuming from the kept" in done.stderr
    assert (run / "train_state.pt").read_bytes() == (kept / "train_state.pt").read_bytes()
    assert done.returncode == 2 and "unfinished shard" in done.stderr


def test_a_kept_finished_run_puts_its_checkpoint_in_place_instead_of_training(tmp_path):
    kept = tmp_path / "kept" / "tabletop_grounded" / "checkpoint"
    kept.mkdir(parents=True)
    (kept / "model.safetensors").write_bytes(b"weights")
    run = tmp_path / "runs" / "tabletop_grounded"
    done = _train_libero(tmp_path, run, KEEP_DIR=str(tmp_path / "kept"))
    assert done.returncode == 0 and "is finished" in done.stderr, done.stderr
    assert (run / "checkpoint" / "model.safetensors").read_bytes() == b"weights"
    assert not (run / "train_state.pt").exists()


def test_a_checkout_without_the_run_folder_uses_the_kept_checkpoint(tmp_path):
    """runs/ is ignored and lost with a checkout: the evaluation and a fine-tune from a
    finished run read the keep stage's committed copy, and the run's own checkpoint once
    it is there."""
    run = tmp_path / "runs" / "tabletop_grounded"
    kept = tmp_path / "kept" / "tabletop_grounded" / "checkpoint"
    kept.mkdir(parents=True)
    (kept / "model.safetensors").write_bytes(b"weights")
    env = dict(RUN=str(run), KEEP_DIR=str(tmp_path / "kept"), SUITE_EPISODES="4")
    plan = _plan(tmp_path, "evaluate", "contrast", script=TABLETOP, **env)
    evals = _evaluations(plan)
    assert len(evals) == 30 and all(f"--policy {kept} " in cmd for *_, cmd in evals)
    assert f"--init {kept} " in plan[-2]
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "model.safetensors").write_bytes(b"weights")
    plan = _plan(tmp_path, "evaluate", "contrast", script=TABLETOP, **env)
    assert all(f"--policy {run}/checkpoint " in cmd for *_, cmd in _evaluations(plan))
    assert f"--init {run}/checkpoint " in plan[-2]


def test_shared_scenes_are_refused_on_libero(tmp_path):
    done = subprocess.run(["bash", SCRIPT, "record"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, DRY_RUN="1", PAIRED_RECORD="libero_spatial:0"),
                          timeout=120)
    assert done.returncode == 2 and "tabletop suites only" in done.stderr


def test_a_rerun_skips_the_tasks_whose_json_exists(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "main_libero_object_task03.json").write_text("{}")
    tasks = [t for t, _, configs, _ in _evaluations(_plan(tmp_path, "evaluate"))
             if "fastv" in configs]  # the main run (the ablations start with unpruned too)
    assert "libero_object:2" in tasks and "libero_object:3" not in tasks


def test_one_suite_runs_over_ros_with_a_journal_per_task(tmp_path):
    evals = _evaluations(_plan(tmp_path, "ros"))
    assert [t for t, *_ in evals] == [f"libero_object:{t}" for t in range(10)]
    for task, episodes, configs, cmd in evals:
        assert configs == "unpruned,specprune" and episodes == 10 and "--via ros" in cmd
        assert re.search(r"--resume \S+ros_libero_object_task\d\d\.jsonl", cmd)


def test_the_claim_runs_only_when_named_on_states_0_to_9_of_every_trained_task(tmp_path):
    (tmp_path / "claim").mkdir()
    done = tmp_path / "claim" / "claim_libero_goal_task05.json.tmp"
    done.write_text("{}")  # finished before a stop, not yet renamed: kept, never rerun
    commands = _plan(tmp_path, "claim", CLAIM_STATES="50")  # the script's own value wins
    evals = _evaluations(commands)
    assert len(evals) == 9 + 10 + 8 + 4 - 1
    assert all(e[1] == 10 and "--claim" in e[3] and "--seed" not in e[3] for e in evals)
    assert f"mv {done} {str(done)[:-4]}" in commands
    assert "libero_goal:5" not in [t for t, *_ in evals]


def test_recording_goes_breadth_first_one_shard_of_every_task_per_round(tmp_path):
    recorders = [c for c in _plan(tmp_path, "record", PER_TASK="20") if "libero_demos" in c]
    rounds = [(int(re.search(r"--per-task (\d+)", c).group(1)),
               re.search(r"--suite (\S+)", c).group(1)) for c in recorders]
    suites = {"libero_spatial", "libero_object", "libero_goal", "libero_10"}
    # every suite's first shard before any suite's second (a stop leaves the tasks even);
    # within a round the recorders run side by side, so their order is not fixed
    assert [n for n, _ in rounds] == [10] * 4 + [20] * 4
    assert {s for n, s in rounds if n == 10} == suites == {s for n, s in rounds if n == 20}
    assert all("--shard-size 10" in c and "--seed 10000" in c for c in recorders)


def test_a_demo_count_that_is_not_whole_shards_is_refused(tmp_path):
    done = subprocess.run(["bash", SCRIPT, "record"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, DRY_RUN="1", PER_TASK="45"), timeout=60)
    assert done.returncode == 2 and "PER_TASK=45 must be a positive multiple of 10" in done.stderr


def test_the_script_reads_task_ranges_as_the_recorder_does(tmp_path):
    """The recorder gets RECORD's ranges as text and reads them with parse_ranges; the
    evaluation stage expands the same text in bash: both must name the same tasks."""
    from specprune_ros.sim.libero_experts import parse_ranges
    record = "libero_goal:1,2,4-9 libero_10:0,7-8 libero_object:3"
    tasks = {}
    for task, _, _, _ in _evaluations(_plan(tmp_path, "evaluate", RECORD=record)):
        suite, index = task.split(":")
        tasks.setdefault(suite, set()).add(int(index))
    assert tasks == {item.split(":")[0]: set(parse_ranges(item.split(":")[1]))
                     for item in record.split()}
    assert tasks["libero_goal"] == {1, 2, 4, 5, 6, 7, 8, 9}


def test_the_tabletop_suites_run_the_same_chain_on_their_own_tasks_and_claim_seeds(tmp_path):
    commands = _plan(tmp_path, "record", "train", "evaluate", "claim", script=TABLETOP)
    recorders = [c for c in commands if "tabletop_demos" in c]
    # four suites, PER_TASK 40 in shards of 10; then each on shared scenes, 20 in shards
    assert len(recorders) == 4 * 4 + 4 * 2
    assert all("--out demos/tabletop" in c and "--frame-every 4" in c for c in recorders)
    assert not any("libero_demos" in c for c in commands)
    assert ("env DEMOS=demos/tabletop,demos/tabletop_paired RUN=runs/tabletop_grounded bash "
            "scripts/train_libero.sh --aux-named 0.2") in commands
    evals = _evaluations(commands)
    main = [(t, n) for t, n, configs, cmd in evals
            if configs == "unpruned,specprune,fastv,random" and "--claim" not in cmd]
    # two jobs side by side: their lines come in either order
    assert sorted(main) == sorted([(f"sim_spatial_{i}", 25) for i in range(4)] + [
        (f"sim_object_{i}", 25) for i in range(4)] + [(f"sim_goal_{i}", 25) for i in range(4)] + [
        (f"sim_long_{i}", 34) for i in range(3)])
    assert all("--policy runs/tabletop_grounded/checkpoint" in cmd for *_, cmd in evals)
    claims = [(t, n) for t, n, _, cmd in evals if "--claim" in cmd]
    assert sorted(claims) == sorted(main)  # the claim seeds, as many per task as development
    assert all("--seed" not in cmd for *_, cmd in evals if "--claim" in cmd)


def test_the_attention_row_runs_only_when_named_and_fine_tunes_the_headline_policy(tmp_path):
    """Issue #19's second, labelled row: never in the default run; when named, the headline
    checkpoint fine-tuned with the attention loss into its own folder, then the main
    configurations on that policy, on the same development seeds, into their own JSONs."""
    assert not any("aux-attention" in c for c in _plan(tmp_path, script=TABLETOP))
    commands = _plan(tmp_path, "attention", script=TABLETOP)
    assert commands[0] == ("env DEMOS=demos/tabletop,demos/tabletop_paired "
                           "RUN=runs/tabletop_grounded_attention STEPS=1500 bash "
                           "scripts/train_libero.sh --init runs/tabletop_grounded/checkpoint "
                           "--aux-named 0.2 --aux-attention 0.05 --aux-attention-target --lr 2e-4 "
                           "--warmup-steps 50")
    evals = _evaluations(commands)
    assert len(evals) == 15 and all(configs == "unpruned,specprune,fastv,random"
                                    for _, _, configs, _ in evals)
    for task, episodes, _, cmd in evals:
        assert "--policy runs/tabletop_grounded_attention/checkpoint" in cmd
        assert "--seed 500000" in cmd and "/attention_sim_" in cmd
        assert episodes == (34 if task.startswith("sim_long") else 25)
    assert sum("suite_table" in c and "table_attention_" in c for c in commands) == 4
    # on a data-fix stage's policy: the demos that policy was trained on, its own folder
    commands = _plan(tmp_path, "attention", script=TABLETOP,
                     HEADLINE="runs/tabletop_grounded_contrast")
    assert commands[0].startswith(
        "env DEMOS=demos/tabletop,demos/tabletop_paired,demos/tabletop_contrast "
        "RUN=runs/tabletop_grounded_contrast_attention STEPS=1500 bash scripts/train_libero.sh "
        "--init runs/tabletop_grounded_contrast/checkpoint ")
    assert all("--policy runs/tabletop_grounded_contrast_attention/checkpoint" in cmd
               for *_, cmd in _evaluations(commands))


def test_the_token_drop_row_fine_tunes_the_finished_attention_policy(tmp_path):
    """The third labelled row: never in the default run; when named, only after the
    attention run is checked finished, from its checkpoint, the attention loss kept and the
    token-drop augmentation on, into its own run folder."""
    assert not any("token-drop" in c for c in _plan(tmp_path, script=TABLETOP))
    commands = _plan(tmp_path, "token_drop", script=TABLETOP,
                     HEADLINE="runs/tabletop_grounded_contrast")
    assert commands == [
        "trained runs/tabletop_grounded_contrast_attention",
        "env DEMOS=demos/tabletop,demos/tabletop_paired,demos/tabletop_contrast "
        "RUN=runs/tabletop_grounded_contrast_attention_tokendrop STEPS=1000 bash "
        "scripts/train_libero.sh --init runs/tabletop_grounded_contrast_attention/checkpoint "
        "--aux-named 0.2 --aux-attention 0.05 --aux-attention-target --token-drop 0.5 "
        "--token-drop-keep-min 0.15 --token-drop-layers 1,2 --lr 2e-4 --warmup-steps 50",
        "trained runs/tabletop_grounded_contrast_attention_tokendrop"]
    # trained for SpecPrune's own selection: from the token-drop run, into its own folder
    commands = _plan(tmp_path, "token_drop", script=TABLETOP,
                     HEADLINE="runs/tabletop_grounded_contrast", DROP_SCORED="0.5",
                     DROP_LAYERS="2", DROP_STEPS="600",
                     DROP_FROM="runs/tabletop_grounded_contrast_attention_tokendrop")
    assert commands[0] == "trained runs/tabletop_grounded_contrast_attention_tokendrop"
    assert commands[1].startswith(
        "env DEMOS=demos/tabletop,demos/tabletop_paired,demos/tabletop_contrast "
        "RUN=runs/tabletop_grounded_contrast_attention_tokendrop_scored STEPS=600 bash "
        "scripts/train_libero.sh --init "
        "runs/tabletop_grounded_contrast_attention_tokendrop/checkpoint ")
    assert "--token-drop-layers 2 --token-drop-scored 0.5 --lr 2e-4" in commands[1]


def test_nothing_runs_on_the_checkpoint_of_a_training_that_stopped_early(tmp_path):
    """A sitting stopped at a step boundary (a signal, MINUTES, STOP_STEP) exits 0 with its
    state saved short of the last step: the chain ends there with exit 3, before the
    evaluation reads the partial checkpoint; finished, it goes on. A real tiny run."""
    from libero_demo_helpers import OBJECT, write_shard

    demos, run = tmp_path / "demos", tmp_path / "run"
    demos.mkdir()
    write_shard(demos / "libero_object_task00_part00.hdf5", OBJECT, (12, 11), seed=5)
    env = {k: v for k, v in os.environ.items() if k not in ("DRY_RUN", "MINUTES")}
    env.update(DEMOS=str(demos), RUN=str(run), PRESET="tiny", STEPS="4", VAL_DEMOS="1",
               THREADS="1", STOP_STEP="2", RECORD="libero_object:0",
               EVAL=str(tmp_path / "eval"), KEEP_DIR=str(tmp_path / "none"))
    done = subprocess.run(["bash", SCRIPT, "train", "evaluate"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 3, done.stderr[-3000:]
    assert "stop step 2 reached" in done.stdout
    assert f"{run} stopped before its last step" in done.stdout
    assert "stage evaluate" not in done.stdout and not (tmp_path / "eval").exists()
    # every training call of the chain is checked: the plan shows where
    for stages, checked in ((("train",), "runs/libero_deep"),
                            (("attention",), "runs/tabletop_grounded_attention"),
                            (("contrast",), "runs/tabletop_grounded_contrast")):
        plan = _plan(tmp_path, *stages, script=SCRIPT if stages == ("train",) else TABLETOP)
        assert plan[[i for i, c in enumerate(plan) if "train_libero.sh" in c][0] + 1] == \
            f"trained {checked}"


def test_results_and_journals_go_to_a_tracked_folder_named_after_the_policy():
    """Ignored folders do not outlive a checkout: the evaluation's JSONs and the journals a
    stopped evaluation resumes from live in results/<run>_eval (and _claim), not runs/."""
    env = {k: v for k, v in os.environ.items() if k not in ("EVAL", "CLAIM_DIR")}
    done = subprocess.run(["bash", TABLETOP, "evaluate", "claim"], cwd=REPO, text=True,
                          capture_output=True, env=dict(env, DRY_RUN="1"), timeout=300)
    assert done.returncode == 0, done.stderr
    evals = _evaluations(done.stdout.splitlines())
    assert evals and all("--json results/tabletop_grounded_" in cmd for *_, cmd in evals)
    assert any("--resume results/tabletop_grounded_eval/main_sim_spatial_task00.jsonl" in cmd
               for *_, cmd in evals)
    assert any("--json results/tabletop_grounded_claim/" in cmd for *_, cmd in evals)
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/tabletop_grounded_eval/x"],
                             cwd=REPO)
    assert ignored.returncode == 1  # not ignored: git add finds it


def test_keep_scale_reaches_every_evaluation_and_gets_folders_of_its_own():
    """KEEP_SCALE (SpecPrune's alpha) is passed to every evaluation, the claim included, and
    its results never mix with the default budget's; the default passes nothing (journals
    of a default run resume under the same command)."""
    env = {k: v for k, v in os.environ.items() if k not in ("EVAL", "CLAIM_DIR")}

    def evaluations(**extra):
        done = subprocess.run(["bash", TABLETOP, "evaluate", "ros", "claim"], cwd=REPO,
                              text=True, capture_output=True,
                              env=dict(env, DRY_RUN="1", **extra), timeout=300)
        assert done.returncode == 0, done.stderr
        return _evaluations(done.stdout.splitlines())

    scaled = evaluations(KEEP_SCALE="2")
    assert scaled and all("--prune keep_scale=2 " in cmd for *_, cmd in scaled)
    assert all("--json results/tabletop_grounded_keep2_eval/" in cmd
               or "--json results/tabletop_grounded_keep2_claim/" in cmd for *_, cmd in scaled)
    assert any("--via ros" in cmd for *_, cmd in scaled)
    assert not any("keep_scale" in cmd or "_keep" in cmd for *_, cmd in evaluations())
