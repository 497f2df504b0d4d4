"""Checkpoint folders in the released OpenVLA-OFT layout: round trip and clear errors."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from specprune import CheckpointError, PruneConfig, load_policy, save_checkpoint
from specprune.model.checkpoint import checkpoint_hash
from specprune.model.loading import decoder_depth

from core_helpers import observation, tiny_policy


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    policy = tiny_policy(PruneConfig(enabled=False), seed=3)
    folder = str(tmp_path_factory.mktemp("ckpt") / "tiny-libero")
    save_checkpoint(folder, policy.model, policy.tokenizer, policy.statistics, step=5)
    return policy, folder


def copy_of(folder, tmp_path):
    dst = str(tmp_path / "copy")
    shutil.copytree(folder, dst)
    return dst


def test_folder_has_the_released_file_names(saved):
    _, folder = saved
    names = set(os.listdir(folder))
    assert {"config.json", "model.safetensors", "dataset_statistics.json",
            "action_head--5_checkpoint.pt", "proprio_projector--5_checkpoint.pt",
            "tokenizer.json"} <= names
    keys = load_file(os.path.join(folder, "model.safetensors")).keys()
    assert any(k.startswith("vision_backbone.featurizer.blocks.0.ls1.scale_factor") for k in keys)
    assert "projector.fc3.weight" in keys
    assert "language_model.model.layers.0.self_attn.q_proj.weight" in keys
    assert "model.mlp_resnet_blocks.1.ffn.1.weight" in torch.load(
        os.path.join(folder, "action_head--5_checkpoint.pt"))


@pytest.mark.numeric
def test_round_trip_gives_identical_actions(saved):
    policy, folder = saved
    loaded = load_policy(folder, device="cpu", prune_config=PruneConfig(enabled=False))
    a, _ = policy.step(observation(0))
    b, _ = loaded.step(observation(0))
    np.testing.assert_array_equal(a.actions, b.actions)
    assert loaded.layout.action_names[-1] == "gripper"


@pytest.mark.numeric
def test_ddp_prefix_and_sharded_weights_load(saved, tmp_path):
    policy, folder = saved
    dst = copy_of(folder, tmp_path)
    head = os.path.join(dst, "action_head--5_checkpoint.pt")
    torch.save({"module." + k: v for k, v in torch.load(head).items()}, head)
    tensors = load_file(os.path.join(dst, "model.safetensors"))
    os.remove(os.path.join(dst, "model.safetensors"))
    keys = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": keys[::2],
              "model-00002-of-00002.safetensors": keys[1::2]}
    weight_map = {}
    for name, part in shards.items():
        save_file({k: tensors[k] for k in part}, os.path.join(dst, name))
        weight_map.update({k: name for k in part})
    with open(os.path.join(dst, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    loaded = load_policy(dst, device="cpu", prune_config=PruneConfig(enabled=False))
    np.testing.assert_array_equal(policy.step(observation(0))[0].actions,
                                  loaded.step(observation(0))[0].actions)


@pytest.mark.parametrize("victim, words", [
    ("config.json", "config.json: file missing"),
    ("dataset_statistics.json", "dataset_statistics.json: file missing"),
    ("action_head--5_checkpoint.pt", "no action_head"),
    ("model.safetensors", "neither model.safetensors"),
    ("tokenizer.json", "tokenizer"),
])
def test_missing_file_is_named(saved, tmp_path, victim, words):
    dst = copy_of(saved[1], tmp_path)
    os.remove(os.path.join(dst, victim))
    if victim == "tokenizer.json":
        for extra in ("tokenizer_config.json", "special_tokens_map.json"):
            if os.path.exists(os.path.join(dst, extra)):
                os.remove(os.path.join(dst, extra))
    with pytest.raises(CheckpointError, match=words):
        load_policy(dst, device="cpu")


def test_corrupt_safetensors_is_named(saved, tmp_path):
    dst = copy_of(saved[1], tmp_path)
    with open(os.path.join(dst, "model.safetensors"), "wb") as f:
        f.write(b"not a tensor file")
    with pytest.raises(CheckpointError, match="model.safetensors: cannot be read"):
        load_policy(dst, device="cpu")


def test_corrupt_head_is_named(saved, tmp_path):
    dst = copy_of(saved[1], tmp_path)
    with open(os.path.join(dst, "action_head--5_checkpoint.pt"), "wb") as f:
        f.write(b"garbage")
    with pytest.raises(CheckpointError, match="action_head--5_checkpoint.pt"):
        load_policy(dst, device="cpu")


def test_shape_mismatch_names_the_key(saved, tmp_path):
    dst = copy_of(saved[1], tmp_path)
    path = os.path.join(dst, "model.safetensors")
    tensors = load_file(path)
    tensors["projector.fc3.weight"] = torch.zeros(3, 3)
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match=r"projector.fc3.weight has shape \(3, 3\)"):
        load_policy(dst, device="cpu")


def test_missing_key_is_named(saved, tmp_path):
    dst = copy_of(saved[1], tmp_path)
    path = os.path.join(dst, "model.safetensors")
    tensors = load_file(path)
    del tensors["language_model.model.norm.weight"]
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match="missing key language_model.model.norm.weight"):
        load_policy(dst, device="cpu")


def test_missing_folder_and_unknown_preset():
    with pytest.raises(FileNotFoundError, match="neither a checkpoint folder nor a preset"):
        load_policy("/no/such/folder", device="cpu")


def test_real_checkpoint_config_defaults_to_llama2_7b():
    """A released config.json only lists a few text_config fields: the rest must be the
    LlamaConfig defaults, which are Llama-2-7B's."""
    from transformers import LlamaConfig
    cfg = LlamaConfig(vocab_size=32064, pad_token_id=32000)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (4096, 32, 11008)


def test_checkpoint_hash_follows_the_content_not_the_folder(saved, tmp_path):
    _, folder = saved
    digest = checkpoint_hash(folder)
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    copy = copy_of(folder, tmp_path)
    os.makedirs(os.path.join(copy, ".cache", "huggingface"))  # hub download bookkeeping
    with open(os.path.join(copy, ".cache", "huggingface", "meta"), "w") as f:
        f.write("downloaded at noon")
    assert checkpoint_hash(copy) == digest  # same files elsewhere, hidden ones ignored
    with open(os.path.join(copy, "dataset_statistics.json"), "a") as f:
        f.write(" ")  # one byte more
    changed = checkpoint_hash(copy)
    assert changed != digest
    os.rename(os.path.join(copy, "dataset_statistics.json"), os.path.join(copy, "stats.json"))
    assert checkpoint_hash(copy) not in (digest, changed)  # same bytes, another name
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        checkpoint_hash(os.path.join(copy, "stats.json"))


def test_decoder_depth_reads_the_config_without_weights(saved, tmp_path):
    policy, folder = saved
    assert decoder_depth(folder) == policy.model.num_layers
    assert decoder_depth("libero-deep") == 16 and decoder_depth("oft-cpu") == 32
    bare = tmp_path / "bare"  # config.json alone: no weights are read
    bare.mkdir()
    shutil.copy(os.path.join(folder, "config.json"), bare / "config.json")
    assert decoder_depth(str(bare)) == policy.model.num_layers
    with open(bare / "config.json", "w") as f:
        json.dump({"text_config": {"num_hidden_layers": "many"}}, f)
    with pytest.raises(CheckpointError, match="num_hidden_layers is 'many'"):
        decoder_depth(str(bare))
    with pytest.raises(FileNotFoundError, match="neither a checkpoint folder nor a preset"):
        decoder_depth(str(tmp_path / "absent"))
