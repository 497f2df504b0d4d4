"""Training on demonstration HDF5 (issue #4 format): data, statistics, OFT loss, checkpoint."""
import json
import os

import h5py
import numpy as np
import pytest
import torch

from demo_helpers import COLOURS, write_demos
from specprune import PruneConfig, load_policy
from specprune.train.demo_dataset import DemoFileError, dataset_statistics, read_demos
from specprune.model.prompting import encode_prompt
from specprune.model.tiny_tokenizer import build_tokenizer, empty_token_id
from specprune.train.batches import Augment, crop_margin
from specprune.train.optimisation import learning_rate, make_optimizer, predict, train_step
from specprune.train.train_config import TrainConfig
from specprune.train.training import main, prepare, train
from specprune.types import Observation


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    return write_demos(tmp_path_factory.mktemp("demos") / "demos.hdf5")


def tiny_config(demo_file, out, **changes):
    base = dict(demos=demo_file, out=str(out), preset="tiny", steps=3, batch_size=4,
                val_demos=1, warmup_steps=2, log_every=1, seed=0, threads=1,
                state_dir=str(out) + "-state")
    return TrainConfig(**dict(base, **changes))


@pytest.fixture(scope="module")
def trained(demo_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "pick_color"
    lines = []
    run = train(tiny_config(demo_file, out), log=lines.append)
    return run, str(out), lines


def test_chunks_are_the_next_actions_with_the_last_repeated(demo_file):
    demos = read_demos(demo_file, chunk=8, action_dim=7, proprio_dim=8, image_size=224)
    assert len(demos) == 16 and demos.frames[0].shape == (16, 224, 224, 3)
    chunks = demos.target_chunks(np.arange(len(demos)))  # (16, 8, 7)
    with h5py.File(demo_file) as f:
        second = f["data/demo_1/actions"][()]
    np.testing.assert_array_equal(chunks[5, :7], second)  # demo_1 starts at sample 5
    np.testing.assert_array_equal(chunks[5, 7], second[-1])
    np.testing.assert_array_equal(chunks[11], np.repeat(second[-1:], 8, axis=0))
    assert demos.instructions == ["pick up the red cube", "pick up the green cube",
                                  "pick up the blue cube"]


def test_statistics_have_the_released_keys_and_mask_the_gripper(demo_file):
    demos = read_demos(demo_file, 8, 7, 8, 224)
    stats = dataset_statistics(demos, demos.samples_of([0, 2]), [True] * 6 + [False])
    for part, dim in (("action", 7), ("proprio", 8)):
        assert set(stats[part]) == {"mean", "std", "max", "min", "q01", "q99", "mask"}
        assert all(len(v) == dim for v in stats[part].values())
        assert np.all(np.array(stats[part]["q01"]) <= np.array(stats[part]["q99"]))
    assert stats["action"]["mask"] == [True] * 6 + [False]
    assert all(stats["proprio"]["mask"])
    assert stats["num_transitions"] == 9 and stats["num_trajectories"] == 2


def test_all_colour_instructions_have_one_prompt_length():
    tok = build_tokenizer()
    lengths = {len(encode_prompt(tok, f"pick up the {c} cube", empty_token_id(tok)).ids)
               for c in COLOURS}
    assert len(lengths) == 1


@pytest.fixture
def one_thread():
    """Direct calls (not train()) run on one thread, as train() does with threads=1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_overfitting_one_batch_lowers_the_l1_loss(demo_file, tmp_path, one_thread):
    cfg = tiny_config(demo_file, tmp_path, lr=2e-3, warmup_steps=0, val_demos=0)
    run, _ = prepare(cfg, log=lambda line: None)
    batch = run.data.batch(run.train_samples[:4])
    assert batch.target.abs().max() <= 1.0 and batch.proprio.abs().max() <= 1.0
    optimizer = make_optimizer(run.model, cfg)
    losses = [train_step(run.model, optimizer, batch, cfg.lr, cfg.grad_clip)["l1"]
              for _ in range(12)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.75 * losses[0]


def test_saved_folder_loads_and_reproduces_the_trained_model(trained, one_thread):
    run, folder, lines = trained
    assert any(line.startswith("step 3/3 loss") for line in lines)
    summary = json.load(open(os.path.join(folder, "training_summary.json")))
    assert summary["steps"] == 3 and np.isfinite(summary["val_l1"])
    policy = load_policy(folder, device="cpu", prune_config=PruneConfig(enabled=False))
    assert policy.statistics == json.loads(json.dumps(run.statistics))
    demos = run.data.demos
    for i in (int(run.val_samples[0]), int(run.train_samples[-1])):
        obs = Observation(images=[view[i] for view in demos.frames],
                          instruction=demos.instructions[demos.demo_of[i]],
                          proprio=demos.proprio[i].astype(np.float64))
        chunk, _ = policy.step(obs)
        with torch.no_grad():
            expected = predict(run.model.eval(), run.data.batch([i]))[0].numpy()
        np.testing.assert_allclose(chunk.normalized, expected, atol=1e-5, rtol=0)


def test_training_is_reproducible_with_a_fixed_seed(trained, demo_file, tmp_path):
    run, _, _ = trained
    again = train(tiny_config(demo_file, tmp_path / "again"), log=lambda line: None)
    for (name, a), b in zip(run.model.state_dict().items(), again.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_a_time_budget_fixes_the_step_count_after_calibration(demo_file, tmp_path):
    lines = []
    cfg = tiny_config(demo_file, tmp_path, steps=None, minutes=0.04, calibration_steps=2)
    run = train(cfg, log=lines.append)
    calibrated = [line for line in lines if line.startswith("calibrated:")]
    assert len(calibrated) == 1
    total = int(calibrated[0].split("--steps ")[1].split()[0])
    # the run does exactly the calibrated steps, however busy the machine (no wall clock
    # in the assertion: at load ~10 the 2.4 s budget was overrun by the first step)
    assert run.summary["steps"] == total >= 2


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(demos="d", out="o", steps=100, warmup_steps=10, lr=1e-3,
                      min_lr_ratio=0.1)
    assert learning_rate(0, 100, cfg) == pytest.approx(1e-4)
    assert learning_rate(9, 100, cfg) == pytest.approx(1e-3)
    assert learning_rate(55, 100, cfg) == pytest.approx(5.5e-4)
    assert learning_rate(100, 100, cfg) == pytest.approx(1e-4)
    assert learning_rate(9, None, cfg) == pytest.approx(1e-3)  # warm-up needs no total
    with pytest.raises(ValueError, match="past warm-up"):
        learning_rate(10, None, cfg)


def test_augmentation_stays_inside_the_centre_crop_margin():
    cfg = TrainConfig(demos="d", out="o", steps=1, shift_pixels=6)
    assert crop_margin(224, 0.9) == 5  # processing.center_crop_box keeps rows 5..217
    model_cfg = type("C", (), {"image_size": 224, "center_crop_scale": 0.9})()
    with pytest.raises(ValueError, match="shift_pixels=6 exceeds"):
        Augment(cfg, model_cfg, np.random.default_rng(0))
    plain = TrainConfig(demos="d", out="o", steps=1, shift_pixels=0, brightness=0.0,
                        contrast=0.0)
    frame = torch.randint(0, 256, (224, 224, 3), dtype=torch.uint8)
    assert torch.equal(Augment(plain, model_cfg, np.random.default_rng(0))(frame), frame)


def test_bad_config_values_name_the_field():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(demos="d", out="o", steps=1, batch_size=0)
    with pytest.raises(ValueError, match="steps or minutes"):
        TrainConfig(demos="d", out="o")
    with pytest.raises(ValueError, match="lr must be float"):
        TrainConfig(demos="d", out="o", steps=1, lr="fast")
    assert main(["--demos", "d", "--out", "o", "--steps", "0"]) == 2


def test_missing_file_is_named(tmp_path):
    missing = str(tmp_path / "nope.hdf5")
    with pytest.raises(FileNotFoundError, match="nope.hdf5"):
        read_demos(missing, 8, 7, 8, 224)


def test_demo_without_actions_is_named(tmp_path):
    path = write_demos(tmp_path / "bad.hdf5", skip=(1, "actions"))
    with pytest.raises(DemoFileError, match="demo_1: dataset 'actions' missing"):
        read_demos(path, 8, 7, 8, 224)


def test_wrong_image_shape_is_named(tmp_path):
    path = write_demos(tmp_path / "bad.hdf5", lengths=(3,), image_shape=(224, 224, 4))
    with pytest.raises(DemoFileError, match="demo_0/obs/agentview_image: expected"):
        read_demos(path, 8, 7, 8, 224)


def test_too_many_held_out_demos_is_an_error(demo_file, tmp_path):
    with pytest.raises(ValueError, match="val_demos=3 leaves no training demo"):
        train(tiny_config(demo_file, tmp_path, val_demos=3), log=lambda line: None)


def test_the_training_command_runs_a_few_steps_of_the_shipped_size(demo_file, tmp_path,
                                                                   capsys):
    """What CI runs of ``python -m specprune.train.training``: the sim-small preset, 2 steps."""
    out = tmp_path / "sim_small"
    assert main(["--demos", demo_file, "--out", str(out), "--preset", "sim-small",
                 "--steps", "2", "--batch-size", "2", "--val-demos", "1",
                 "--warmup-steps", "1", "--threads", "1",
                 "--state-dir", str(tmp_path / "state")]) == 0
    printed = capsys.readouterr().out
    assert "sim-small: 2.01 M parameters" in printed and "step 2/2 loss" in printed
    policy = load_policy(str(out), device="cpu")
    assert policy.model.cfg.image_size == 224
    assert policy.model.vision_backbone.num_patches == 256  # 2 views x 16 x 16 kept
    assert len(policy.model.decoder.layers) == 6


def test_warm_start_copies_every_weight_and_rejects_another_preset(trained, demo_file,
                                                                   tmp_path, one_thread):
    run, folder, _ = trained
    lines = []
    warm, _ = prepare(tiny_config(demo_file, tmp_path / "warm", init=folder), lines.append)
    assert f"warm start from {folder}" in lines
    for (name, a), b in zip(run.model.state_dict().items(), warm.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    with pytest.raises(ValueError, match="does not match the preset"):
        prepare(tiny_config(demo_file, tmp_path / "bad", init=folder, preset="sim-small"),
                lambda line: None)
