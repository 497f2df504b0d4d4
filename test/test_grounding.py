"""specprune-grounding: swap effects are attributed to the input that was swapped."""
import json

import numpy as np
import pytest
import torch

from demo_helpers import COLOURS, write_demos
from specprune.bench import machine
from specprune.model.checkpoint import checkpoint_hash
from specprune.train.grounding import frame_samples, main, measure
from specprune.model.presets import LAYOUTS
from specprune.model.tiny_tokenizer import build_tokenizer
from specprune.train.training import TrainConfig, prepare, train

NAMES = LAYOUTS["libero"].action_names


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    return write_demos(tmp_path_factory.mktemp("demos") / "demos.hdf5", lengths=(4, 5, 3, 6))


def config(demo_file, out, **changes):
    return TrainConfig(**dict(dict(demos=demo_file, out=str(out), preset="tiny", steps=1,
                                   batch_size=4, val_demos=0, warmup_steps=1, seed=0,
                                   threads=1, state_dir=str(out) + "-state"), **changes))


@pytest.fixture(scope="module")
def run(demo_file, tmp_path_factory):
    run, _ = prepare(config(demo_file, tmp_path_factory.mktemp("unused")), log=lambda _: None)
    return run


def test_frame_samples_take_one_row_per_demo_clamped_to_its_end():
    demo_of = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(frame_samples(demo_of, 0, 10), [0, 3, 5])
    np.testing.assert_array_equal(frame_samples(demo_of, 2, 2), [2, 4])
    with pytest.raises(ValueError, match="max_demos"):
        frame_samples(demo_of, 0, 1)


def test_random_model_moves_with_every_input_and_labels_are_the_files(run):
    samples = frame_samples(run.data.demos.demo_of, 1, 4)
    result = measure(run.model, run.data, samples, NAMES, batch_size=3)
    assert result.samples == 4 and tuple(result.action_names) == NAMES
    for swap in ("image", "proprio", "instruction"):
        assert np.all(result.effect[swap] > 0), swap
    labels = run.data.actions[run.data.demos.chunk_index[samples][:, 0]]
    np.testing.assert_allclose(result.label_std, labels.std(0), atol=1e-6)
    assert np.all(np.abs(result.corr) <= 1.0)


def test_a_blinded_model_shows_no_image_effect_and_a_deaf_one_no_instruction_effect(run):
    samples = frame_samples(run.data.demos.demo_of, 0, 4)
    model = run.model
    embed = model.decoder.embed_tokens.weight
    colour_ids = build_tokenizer().convert_tokens_to_ids(list(COLOURS))
    saved_fc3 = {k: v.clone() for k, v in model.projector.fc3.state_dict().items()}
    saved_embed = embed.detach().clone()
    try:
        with torch.no_grad():
            model.projector.fc3.weight.zero_()  # every patch token is fc3's bias
            embed[colour_ids] = embed[colour_ids[0]].clone()  # every colour word reads the same
        result = measure(model, run.data, samples, NAMES)
    finally:
        with torch.no_grad():
            model.projector.fc3.load_state_dict(saved_fc3)
            embed.copy_(saved_embed)
    np.testing.assert_array_equal(result.effect["image"], 0.0)
    np.testing.assert_array_equal(result.effect["instruction"], 0.0)
    assert np.all(result.effect["proprio"] > 0)


def test_command_prints_a_row_per_dimension_and_writes_json(demo_file, tmp_path, capsys):
    folder = tmp_path / "ckpt"
    train(config(demo_file, folder), log=lambda _: None)
    out = tmp_path / "grounding.json"
    assert main(["--checkpoint", str(folder), "--demos", demo_file, "--frame", "2",
                 "--max-demos", "3", "--threads", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "on frame 2 of 3 demos" in printed
    assert sum(line.split()[0] in NAMES for line in printed.splitlines()[2:]) == len(NAMES)
    figures = json.loads(out.read_text())
    assert set(figures["effect"]) == {"image", "proprio", "instruction"}
    assert set(figures["corr"]) == set(NAMES)


def test_json_records_the_checkpoint_hash_demo_file_seeds_and_machine(demo_file, tmp_path):
    folder = tmp_path / "ckpt"
    train(config(demo_file, folder), log=lambda _: None)
    out = tmp_path / "grounding.json"
    assert main(["--checkpoint", str(folder), "--demos", demo_file, "--frame", "1",
                 "--max-demos", "3", "--threads", "1", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["checkpoint"] == str(folder)
    assert figures["checkpoint_hash"] == checkpoint_hash(str(folder))
    assert figures["demos"] == demo_file and figures["frame"] == 1
    assert figures["demo_names"] == ["demo_0", "demo_1", "demo_2"]
    assert figures["demo_seeds"] == [0, 1, 2]  # the seed attributes write_demos gave them
    assert figures["machine"] == machine(1, "cpu", "float32")
    assert figures["machine"]["processor"] and figures["machine"]["cpu_capability"]


def test_command_names_a_missing_checkpoint(demo_file, tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "nowhere"), "--demos", demo_file]) == 2
    assert "nowhere" in capsys.readouterr().err
