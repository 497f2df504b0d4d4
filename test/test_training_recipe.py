"""The grounded training recipe: auxiliary-head labels and losses, label weighting,
early-frame oversampling, and saving / resuming a run exactly."""
import os
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from demo_helpers import write_demos
from specprune import PruneConfig, load_policy
from specprune.model.modeling_vla import IMAGENET_MEAN, IMAGENET_STD
from specprune.model.processing import pixel_values
from specprune.train.auxiliary import model_rgb, named_index, patch_colour_labels
from specprune.train.demo_dataset import read_demos
from specprune.train.batches import BatchSampler, _pre_grasp
from specprune.train.optimisation import action_loss
from specprune.train.train_config import TrainConfig
from specprune.train.training import main, train


def tiny(demo_file, out, **changes):
    base = dict(demos=demo_file, out=str(out), preset="tiny", steps=4, batch_size=4,
                val_demos=1, warmup_steps=2, log_every=1, seed=0, threads=1,
                state_dir=str(out) + "-state")
    return TrainConfig(**dict(base, **changes))


RECIPE = dict(aux_position=0.2, aux_colour=0.1, aux_named=0.2, aux_target=0.3,
              aux_named_layer=1, label_weight=2.0, early_frames=2, early_repeat=3,
              aux_attention=0.1, aux_attention_layers="0,-1")


@pytest.fixture(scope="module")
def cube_demos(tmp_path_factory):
    return write_demos(tmp_path_factory.mktemp("demos") / "cubes.hdf5", cubes=True)


def _frame_with_squares():
    frame = np.full((224, 224, 3), 200, np.uint8)  # light grey table
    frame[28:56, 70:98] = (215, 25, 25)  # red: patch rows 2-3, cols 5-6
    frame[140:154, 14:28] = (25, 60, 230)  # blue: patch (10, 1)
    return frame


def test_patch_colour_labels_mark_the_patches_a_cube_covers():
    rgb = torch.from_numpy(_frame_with_squares()).permute(2, 0, 1)[None].float()
    labels = patch_colour_labels(rgb, ["red", "green", "blue"], grid=16, min_pixels=10)
    grid = labels.view(16, 16)
    assert {tuple(p) for p in torch.nonzero(grid == 1).tolist()} == {(2, 5), (2, 6), (3, 5),
                                                                     (3, 6)}
    assert torch.nonzero(grid == 3).tolist() == [[10, 1]]
    assert int((grid == 2).sum()) == 0 and int((grid == 0).sum()) == 256 - 5


def test_model_rgb_recovers_the_model_input_pixels():
    frame = _frame_with_squares()
    pixels = pixel_values([torch.from_numpy(frame)] * 2, [IMAGENET_MEAN, (0.5,) * 3],
                          [IMAGENET_STD, (0.5,) * 3], 1.0)  # (1, 12, 224, 224)
    rgb = model_rgb(pixels, 2, IMAGENET_MEAN, IMAGENET_STD)  # (2, 3, 224, 224)
    expected = torch.from_numpy(frame).permute(2, 0, 1).float()
    torch.testing.assert_close(rgb[1], expected, atol=1e-3, rtol=0)


def test_named_index_reads_the_one_colour_of_the_instruction():
    assert named_index("pick up the green cube", ["red", "green", "blue"]) == 1
    with pytest.raises(ValueError, match="names 0"):
        named_index("pick up the cube", ["red", "green", "blue"])
    with pytest.raises(ValueError, match="names 2"):
        named_index("put red on blue", ["red", "green", "blue"])


def test_pre_grasp_frames_end_at_the_first_close_label(cube_demos):
    demos = read_demos(cube_demos, 8, 7, 8, 224)
    demos.actions[:, 6] = -1.0
    demos.actions[2, 6] = demos.actions[4, 6] = 1.0  # demo 0 closes first at frame 2
    demos.actions[5 + 6, 6] = 1.0  # demo 1 (starts at sample 5) closes at its frame 6
    mask = _pre_grasp(demos)  # demo 2 never closes
    assert mask.tolist() == [True, True, False, False, False] + [True] * 6 + [False] \
        + [True] * 4


def test_pre_grasp_restarts_with_each_part_of_a_several_part_task(cube_demos):
    """A two-part demo (obs/part): the target head points at the second part's object
    again until that part's own grasp."""
    demos = read_demos(cube_demos, 8, 7, 8, 224)
    demos.actions[:, 6] = -1.0
    demos.actions[2, 6] = demos.actions[4, 6] = 1.0  # demo 0 closes at ticks 2 and 4
    demos.action_part = np.zeros(len(demos.actions), np.int64)
    demos.action_part[3:5] = 1  # ... its second part starts at tick 3
    assert _pre_grasp(demos)[:5].tolist() == [True, True, False, True, False]


def test_label_weight_emphasises_the_large_labels():
    target = torch.tensor([0.0, 1.0])
    pred = torch.tensor([0.5, 0.5])
    assert float(action_loss(pred, target, 0.0)) == pytest.approx(0.5)
    # weights 1 and 3: both errors are 0.5, so the weighted mean stays 0.5 ...
    assert float(action_loss(pred, target, 2.0)) == pytest.approx(0.5)
    # ... but the large label's error now counts three times as much
    worse_on_large = torch.tensor([0.0, 0.0])
    worse_on_small = torch.tensor([1.0, 1.0])
    assert float(action_loss(worse_on_large, target, 2.0)) == pytest.approx(0.75)
    assert float(action_loss(worse_on_small, target, 2.0)) == pytest.approx(0.25)


def test_early_frames_are_drawn_repeat_times_per_epoch():
    samples = np.arange(10)
    frame_index = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    repeat = np.where(frame_index < 2, 3, 1)
    sampler = BatchSampler(samples, np.zeros(10, int), batch_size=2, seed=0, repeat=repeat)
    epoch = np.concatenate([next(sampler) for _ in range(8)])  # 4 x 3 + 6 = 18 draws ...
    counts = np.bincount(epoch, minlength=10)  # ... in 9 batches of 2; 8 seen here
    assert len(sampler._batches) == 9
    assert counts[[2, 3, 4, 7, 8, 9]].max() <= 1 and counts[[0, 1, 5, 6]].sum() >= 10


def test_recipe_trains_every_head_and_exports_the_plain_checkpoint(cube_demos, tmp_path):
    lines = []
    run = train(tiny(cube_demos, tmp_path / "aux", **RECIPE), log=lines.append)
    logged = " ".join(lines)
    for term in ("position", "colour", "named", "target", "attention"):
        assert f" {term} " in logged, term
    plain = tmp_path / "plain"
    train(tiny(cube_demos, plain), log=lambda _: None)
    assert sorted(os.listdir(tmp_path / "aux")) == sorted(os.listdir(plain))
    weights = load_file(str(tmp_path / "aux" / "model.safetensors"))
    assert set(weights) == set(load_file(str(plain / "model.safetensors")))
    state = torch.load(str(tmp_path / "aux-state" / "train_state.pt"), weights_only=False)
    assert {"position.1.weight", "target.1.weight"} <= set(state["heads"])
    policy = load_policy(str(tmp_path / "aux"), device="cpu",
                         prune_config=PruneConfig(enabled=False))
    assert run.summary["steps"] == 4 and policy.model.num_layers == run.model.num_layers


def test_recipe_needs_the_privileged_labels(tmp_path):
    plain_demos = write_demos(tmp_path / "plain.hdf5")
    with pytest.raises(ValueError, match="record the demos again"):
        train(tiny(plain_demos, tmp_path / "o", aux_colour=0.1), log=lambda _: None)


@pytest.mark.parametrize("first_stop", ["sitting_steps", "stop_step"])
def test_a_run_in_two_sittings_equals_one_run(cube_demos, tmp_path, first_stop):
    """A sitting of 2 steps (or a stage ended at step 2, as scripts/train_grounded.sh
    ends its stages) resumed to the schedule's 4 equals one run of 4."""
    whole = train(tiny(cube_demos, tmp_path / "whole", **RECIPE), log=lambda _: None)
    first = train(tiny(cube_demos, tmp_path / "split", **{first_stop: 2}, **RECIPE),
                  log=lambda _: None)
    assert first.summary["steps"] == 2
    lines = []
    second = train(tiny(cube_demos, tmp_path / "split", resume=True, **RECIPE),
                   log=lines.append)
    assert any("resumed" in line and "at step 2/4" in line for line in lines)
    assert second.summary["steps"] == 4 and second.summary["sittings"] == 2
    for (name, a), b in zip(whole.model.state_dict().items(),
                            second.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_refuses_other_settings(cube_demos, tmp_path):
    train(tiny(cube_demos, tmp_path / "r", sitting_steps=1), log=lambda _: None)
    with pytest.raises(ValueError, match="lr=0.0005"):
        train(tiny(cube_demos, tmp_path / "r", resume=True, lr=1e-3), log=lambda _: None)
    with pytest.raises(FileNotFoundError, match="no training state"):
        train(tiny(cube_demos, tmp_path / "new", resume=True), log=lambda _: None)


def test_cli_takes_the_recipe_flags(cube_demos, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["--demos", cube_demos, "--out", str(out), "--preset", "tiny", "--steps", "1",
                 "--batch-size", "2", "--val-demos", "1", "--warmup-steps", "1",
                 "--threads", "1", "--aux-colour", "0.1", "--label-weight", "1",
                 "--state-dir", str(tmp_path / "cli-state")])
    assert code == 0 and (tmp_path / "cli-state" / "train_state.pt").is_file()
    assert main(["--demos", cube_demos, "--out", str(out), "--minutes", "5", "--resume"]) == 2
    assert "resume needs steps" in capsys.readouterr().err


def test_sigterm_ends_the_sitting_at_a_step_boundary_and_saves(cube_demos, tmp_path):
    """A background run (SIGINT ignored there) stops on SIGTERM with its state saved."""
    import signal
    import subprocess
    import sys
    import time

    state = tmp_path / "state"
    cmd = [sys.executable, "-m", "specprune.train.training", "--demos", cube_demos,
           "--out", str(tmp_path / "o"), "--preset", "tiny", "--steps", "100000",
           "--batch-size", "2", "--val-demos", "1", "--warmup-steps", "1", "--threads", "1",
           "--log-every", "1", "--state-dir", str(state)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if line.startswith("step 2/") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    stopped_at = int(re.search(r"stop requested \(signal\) at step (\d+)", out).group(1))
    saved = torch.load(str(state / "train_state.pt"), weights_only=False)
    assert 2 <= saved["step"] < 100000
    assert saved["step"] == stopped_at, "the saved state is not the step the loop stopped at"


def test_fixed_target_readout_reads_the_first_three_coordinates():
    from specprune.train.auxiliary import AuxiliaryHeads, AuxLabels, AuxWeights, Features

    heads = AuxiliaryHeads(dim=8, num_colours=3, action_dim=7, grid=2, views=1)
    head_hidden = torch.zeros(2, 14, 8)
    head_hidden[0, :7, :3] = torch.tensor([0.5, -1.0, 2.0])  # every first-step slot
    labels = AuxLabels(colour=torch.zeros(2, 4, dtype=torch.long),
                       named=torch.zeros(2, dtype=torch.long),
                       target=torch.tensor([[0.5, -1.0, 2.0], [1.0, 1.0, 1.0]]),
                       target_mask=torch.tensor([True, False]))
    feats = Features(actions=torch.zeros(2, 2, 7), patches=torch.zeros(2, 4, 8),
                     visual_hidden=None, head_hidden=head_hidden)
    fixed = AuxWeights(target=1.0, target_readout="fixed")
    assert float(heads.losses(feats, labels, fixed)["target"]) == 0.0  # sample 1 masked
    every = AuxWeights(target=1.0, target_readout="fixed", target_all_frames=True)
    assert float(heads.losses(feats, labels, every)["target"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="aux_target_readout"):
        TrainConfig(demos="d", out="o", steps=1, aux_target_readout="mlp")


def test_attention_loss_is_minus_log_the_named_share_of_the_text_scores():
    from specprune.train.auxiliary import AuxiliaryHeads, AuxLabels, AuxWeights, Features

    heads = AuxiliaryHeads(dim=8, num_colours=3, action_dim=7, grid=2, views=1)
    colour = torch.tensor([[2, 0, 0, 1], [0, 0, 0, 0]])  # sample 1: the named cube unseen
    labels = AuxLabels(colour=colour, named=torch.tensor([1, 1]),
                       target=torch.zeros(2, 3), target_mask=torch.ones(2, dtype=torch.bool))
    scores = torch.tensor([[0.2, 0.1, 0.1, 0.2], [0.1, 0.1, 0.1, 0.1]])  # named share 1/3
    feats = Features(actions=torch.zeros(2, 1, 7), patches=torch.zeros(2, 4, 8),
                     visual_hidden=None, head_hidden=torch.zeros(2, 7, 8),
                     text_to_visual={0: scores, 5: scores})
    loss = heads.losses(feats, labels, AuxWeights(attention=0.5))["attention"]
    assert float(loss) == pytest.approx(0.5 * -np.log(1 / 3 + 1e-6), rel=1e-5)
    with pytest.raises(ValueError, match="aux_attention_layers"):
        TrainConfig(demos="d", out="o", steps=1, aux_attention_layers="0,last")


def test_attention_target_counts_the_place_the_instruction_names_too(cube_demos, tmp_path):
    from specprune.train.auxiliary import AuxiliaryHeads, AuxLabels, AuxWeights, Features

    heads = AuxiliaryHeads(dim=8, num_colours=2, action_dim=7, grid=2, views=1)
    colour = torch.tensor([[1, 2, 0, 0], [0, 2, 0, 0]])  # boxes: 1 object, 2 target
    labels = AuxLabels(colour=colour, named=torch.tensor([0, 0]),
                       target=torch.zeros(2, 3), target_mask=torch.ones(2, dtype=torch.bool))
    scores = torch.tensor([[0.2, 0.1, 0.1, 0.2], [0.1, 0.3, 0.1, 0.1]])
    feats = Features(actions=torch.zeros(2, 1, 7), patches=torch.zeros(2, 4, 8),
                     visual_hidden=None, head_hidden=torch.zeros(2, 7, 8),
                     text_to_visual={0: scores})
    # the object alone: sample 0's share 1/3, sample 1 (object out of view) left out
    alone = heads.losses(feats, labels, AuxWeights(attention=0.5))["attention"]
    assert float(alone) == pytest.approx(0.5 * -np.log(1 / 3 + 1e-6), rel=1e-5)
    # with the target: both samples' share 1/2
    both = heads.losses(feats, labels, AuxWeights(attention=0.5, attention_target=True))
    assert float(both["attention"]) == pytest.approx(0.5 * -np.log(0.5 + 1e-6), rel=1e-5)
    assert TrainConfig(demos="d", out="o", steps=1, aux_attention=0.1,
                       aux_attention_target=True).aux_weights.attention_target
    with pytest.raises(ValueError, match="aux_attention_target needs aux_attention > 0"):
        TrainConfig(demos="d", out="o", steps=1, aux_attention_target=True)
    # colour cubes label no target: refused before any step, with the reason
    with pytest.raises(ValueError, match="aux_attention_target needs .object, target. pairs"):
        train(tiny(cube_demos, tmp_path / "run", **dict(RECIPE, aux_attention_target=True)))


def test_a_time_budgeted_run_resumes_with_its_calibrated_steps(cube_demos, tmp_path):
    same = dict(warmup_steps=3, calibration_steps=2)
    first = train(tiny(cube_demos, tmp_path / "m", steps=None, minutes=10.0, sitting_steps=2,
                       **same), log=lambda _: None)
    total = torch.load(str(tmp_path / "m-state" / "train_state.pt"),
                       weights_only=False)["total"]
    assert first.summary["steps"] == 2 and total >= 2
    with pytest.raises(ValueError, match="steps=None"):
        train(tiny(cube_demos, tmp_path / "m", steps=total + 1, resume=True, **same),
              log=lambda _: None)
    lines = []
    train(tiny(cube_demos, tmp_path / "m", steps=total, resume=True, sitting_steps=1,
               threads=2, **same), log=lines.append)
    assert any("no longer bitwise" in line for line in lines)


def test_a_second_demo_folder_trains_only_and_the_first_keeps_its_held_out_demos(tmp_path):
    """A fine-tune on DEMOS,MORE (the takeover stage) holds out exactly the demos a run on
    DEMOS alone held out; every demo of MORE trains."""
    from specprune.train.batches import split_demos, split_sources
    from specprune.train.demo_dataset import source_demo_counts
    train_ids, val_ids = split_sources([5, 3], 2, seed=0)
    alone_train, alone_val = split_demos(5, 2, seed=0)
    assert val_ids.tolist() == alone_val.tolist()
    assert train_ids.tolist() == alone_train.tolist() + [5, 6, 7]
    # one source (every run before): exactly split_demos, so a resumed run keeps its split
    assert [a.tolist() for a in split_sources([5], 2, seed=0)] == [alone_train.tolist(),
                                                                   alone_val.tolist()]
    first = write_demos(tmp_path / "a.hdf5", lengths=(5, 6, 5), seed=1)
    more = write_demos(tmp_path / "b.hdf5", lengths=(6, 5), seed=2)
    assert source_demo_counts(f"{first},{more}") == [3, 2]
    lines = []
    run = train(tiny(f"{first},{more}", tmp_path / "both"), log=lines.append)
    alone = split_demos(3, 1, seed=0)[1].tolist()
    assert any("4 train demos" in line and "1 held out" in line for line in lines)
    held = sorted({int(run.data.demos.demo_of[i]) for i in run.val_samples})
    assert held == alone
