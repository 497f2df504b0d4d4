"""Checkpoint tokenizers give the ids the reference (transformers 4.40.1) gives.

The fixtures (test/fixtures/tokenizer/README.md) are sentencepiece models with byte
fallback, one BPE (as Llama-2's) and one Unigram, saved by 4.40.1's LlamaTokenizerFast,
and the ids 4.40.1 produced for plain texts and for OpenVLA prompts.
"""
import json
import os
import shutil

import pytest
import torch

from specprune import load_policy
from specprune.model.checkpoint import load_tokenizer, save_checkpoint
from specprune.model.modeling_vla import OpenVLAOFT
from specprune.model.presets import preset_config, synthetic_statistics

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tokenizer")
MODEL_TYPES = ("bpe", "unigram")
with open(os.path.join(FIXTURES, "ids.json"), encoding="utf-8") as _f:
    REFERENCE = json.load(_f)


def _tokens(tokenizer, ids):
    return " ".join(tokenizer.convert_ids_to_tokens(ids))


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_load_tokenizer_gives_the_reference_ids(model_type):
    """Prompts, digits, punctuation, runs of spaces, byte-fallback characters and special
    tokens inside the text: the same ids as 4.40.1's AutoTokenizer."""
    ref = REFERENCE[model_type]
    tokenizer = load_tokenizer(os.path.join(FIXTURES, model_type))
    assert len(tokenizer) == ref["len"]
    assert {k: getattr(tokenizer, k + "_token_id") for k in ref["special_ids"]} == \
        ref["special_ids"]
    for item in ref["texts"]:
        ids = tokenizer(item["text"])["input_ids"]
        assert ids == item["ids"], (
            f"{item['text']!r}: {len(ids)} ids, the reference {len(item['ids'])}\n"
            f"  ours: {_tokens(tokenizer, ids)}\n  ref:  {' '.join(item['tokens'])}")


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_add_eos_token_of_tokenizer_config_applies(model_type, tmp_path):
    """4.40.1's LlamaTokenizerFast takes add_eos_token from tokenizer_config.json over the
    post-processor saved in tokenizer.json."""
    folder = str(tmp_path / model_type)
    shutil.copytree(os.path.join(FIXTURES, model_type), folder)
    _patch_json(os.path.join(folder, "tokenizer_config.json"), add_eos_token=True)
    tokenizer = load_tokenizer(folder)
    for item in REFERENCE[model_type]["add_eos_token"]:
        assert tokenizer(item["text"])["input_ids"] == item["ids"], item["text"]


def _released_folder(root: str, model_type: str) -> str:
    """A tiny checkpoint whose tokenizer files are the 4.40.1 ones (as released folders
    are) and whose config.json and tokenizer_config.json name remote code (auto_map)."""
    ref = REFERENCE[model_type]
    folder = os.path.join(root, model_type)
    torch.manual_seed(0)
    model = OpenVLAOFT(preset_config("tiny", ref["len"], ref["empty_token_id"]))
    fixture_tokenizer = load_tokenizer(os.path.join(FIXTURES, model_type))
    save_checkpoint(folder, model, fixture_tokenizer, synthetic_statistics()["synthetic"])
    for name in os.listdir(os.path.join(FIXTURES, model_type)):
        shutil.copy(os.path.join(FIXTURES, model_type, name), folder)
    _patch_json(os.path.join(folder, "config.json"), auto_map={
        "AutoConfig": "configuration_prismatic.OpenVLAConfig",
        "AutoModelForVision2Seq": "modeling_prismatic.OpenVLAForActionPrediction"})
    _patch_json(os.path.join(folder, "tokenizer_config.json"),
                auto_map={"AutoProcessor": "processing_prismatic.PrismaticProcessor"},
                processor_class="PrismaticProcessor")
    for name in ("configuration_prismatic.py", "processing_prismatic.py"):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write("raise RuntimeError('remote code must never run')\n")
    return folder


def _patch_json(path: str, **entries) -> None:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data.update(entries)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)


@pytest.fixture(scope="module")
def released_folders(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("released"))
    return {model_type: _released_folder(root, model_type) for model_type in MODEL_TYPES}


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_policy_prompt_gives_the_reference_ids(released_folders, model_type):
    """The policy's prompt (instruction lower-cased, the empty token appended, as
    openvla-oft's get_vla_action and predict_action do) from a checkpoint folder."""
    policy = load_policy(released_folders[model_type], device="cpu", dtype="float32")
    for item in REFERENCE[model_type]["prompts"]:
        ids = list(policy._prompt(item["instruction"]).ids)
        assert ids == item["ids"], (
            f"{item['instruction']!r}\n  ours: {_tokens(policy.tokenizer, ids)}\n"
            f"  ref:  {_tokens(policy.tokenizer, item['ids'])}")


def test_auto_map_folder_loads_without_a_question(released_folders, capfd, monkeypatch):
    """Remote code named in config.json and tokenizer_config.json: loading asks nothing on
    stdin, runs none of it and prints no trust_remote_code question or model-type
    warning."""
    asked = []
    monkeypatch.setattr("builtins.input", lambda *a: asked.append(a) or "n")
    capfd.readouterr()
    for folder in released_folders.values():
        load_policy(folder, device="cpu", dtype="float32")
    out, err = capfd.readouterr()
    assert not asked
    for text in ("trust_remote_code", "custom code", "openvla"):
        assert text not in out + err, out + err
