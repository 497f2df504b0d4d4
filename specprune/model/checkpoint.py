"""Read and write checkpoint folders in the released OpenVLA-OFT format.

A folder holds: config.json (OpenVLA config with ``text_config``, ``timm_model_ids``,
``image_sizes``), model.safetensors or model-*.safetensors + model.safetensors.index.json
(keys ``vision_backbone.*``, ``projector.*``, ``language_model.*``),
``action_head--<step>_checkpoint.pt`` and ``proprio_projector--<step>_checkpoint.pt``
(torch state dicts, optionally with DDP's ``module.`` prefix), dataset_statistics.json,
and the tokenizer files. Keys are taken unchanged; every missing or mismatched file or
key raises CheckpointError naming it.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer, PreTrainedConfig, PreTrainedTokenizerFast

from specprune.model.folder_hash import CheckpointError, checkpoint_hash  # noqa: F401
from specprune.model.modeling_vla import OpenVLAOFT, VLAConfig
from specprune.model.presets import LAYOUTS, ActionLayout
from specprune.model.processing import PIPELINE_REFERENCE, PIPELINE_TORCH, PIPELINES

CONFIG, STATS, INDEX = "config.json", "dataset_statistics.json", "model.safetensors.index.json"
SINGLE = "model.safetensors"
#: what specprune-train writes beside the weights: its settings, figures and demo files
TRAINING_SUMMARY = "training_summary.json"
TOKENIZER_FILE, TOKENIZER_CONFIG = "tokenizer.json", "tokenizer_config.json"
LLAMA2_EMPTY_TOKEN = 29871


# Files of OpenVLA-OFT variants this architecture does not implement: loading them as a
# plain L1 checkpoint would silently give other actions.
UNSUPPORTED = {
    "vision_backbone": "a FiLM (OFT+) checkpoint: its vision backbone is conditioned on the "
                       "instruction (use_film), which is not implemented here",
    "noisy_action_projector": "a diffusion-head checkpoint: only the L1 regression head is "
                              "implemented here",
}


def _read_json(folder: str, name: str) -> Dict[str, Any]:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file missing")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from err


def _component_file(folder: str, component: str, required: bool) -> Optional[str]:
    """The one ``<component>--*checkpoint.pt`` file (as the reference finds it)."""
    names = sorted(n for n in os.listdir(folder) if n.startswith(component + "--")
                   and "checkpoint" in n and n.endswith(".pt"))
    if len(names) > 1:
        raise CheckpointError(f"{folder}: several {component} files: {', '.join(names)}")
    if not names:
        if required:
            raise CheckpointError(f"{folder}: no {component}--*_checkpoint.pt file")
        return None
    return os.path.join(folder, names[0])


def _load_component(path: str) -> Dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file
        raise CheckpointError(f"{path}: cannot be read as a torch state dict ({err})") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _safetensor_files(folder: str) -> List[str]:
    if os.path.isfile(os.path.join(folder, SINGLE)):
        return [os.path.join(folder, SINGLE)]
    index = _read_json(folder, INDEX) if os.path.isfile(os.path.join(folder, INDEX)) else None
    if index is None:
        raise CheckpointError(f"{folder}: neither {SINGLE} nor {INDEX} found")
    shards = sorted(set(index.get("weight_map", {}).values()))
    for shard in shards:
        if not os.path.isfile(os.path.join(folder, shard)):
            raise CheckpointError(f"{os.path.join(folder, shard)}: shard listed in {INDEX} "
                                  "is missing")
    return [os.path.join(folder, s) for s in shards]


def _load_backbone(folder: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    tensors: Dict[str, torch.Tensor] = {}
    origin: Dict[str, str] = {}
    for path in _safetensor_files(folder):
        try:
            part = load_file(path)
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: cannot be read as safetensors ({err})") from err
        tensors.update(part)
        origin.update({k: path for k in part})
    return tensors, origin


def _assign(module: nn.Module, state: Dict[str, torch.Tensor], where: Dict[str, str],
            prefix: str = "") -> None:
    """Strict load that names the file and key of the first problem."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise CheckpointError(f"{prefix or 'checkpoint'}: missing key {prefix}{missing[0]} "
                              f"({len(missing)} missing)")
    extra = [k for k in state if k not in expected]
    if extra:
        raise CheckpointError(f"{where.get(extra[0], prefix)}: unexpected key {extra[0]}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{where.get(key, prefix)}: key {key} has shape {tuple(value.shape)}, the "
                f"architecture expects {tuple(expected[key].shape)}")
    module.load_state_dict(state, strict=True)


def _vla_config(cfg: Dict[str, Any], layout: ActionLayout, proprio_dim: int,
                num_images: int) -> VLAConfig:
    if not cfg.get("use_fused_vision_backbone", True):
        raise CheckpointError(f"{CONFIG}: only fused DINOv2+SigLIP backbones are supported")
    extras = cfg.get("specprune", {})
    text = {k: v for k, v in cfg.get("text_config", {}).items()
            if k not in ("model_type", "torch_dtype", "architectures")}
    ids = cfg.get("timm_model_ids")
    if not ids or len(ids) != 2:
        raise CheckpointError(f"{CONFIG}: timm_model_ids must list the two fused backbones")
    kwargs: Dict[str, Any] = dict(
        text_config=text, timm_model_ids=tuple(ids),
        timm_override_act_layers=tuple(cfg.get("timm_override_act_layers", (None, None))),
        timm_overrides=tuple(extras.get("timm_overrides", ({}, {}))),
        image_size=int(cfg.get("image_sizes", [224])[0]), num_images=num_images,
        chunk=layout.chunk, action_dim=layout.action_dim, proprio_dim=proprio_dim,
        empty_token_id=int(extras.get("empty_token_id", LLAMA2_EMPTY_TOKEN)))
    if "center_crop_scale" in extras:
        kwargs["center_crop_scale"] = float(extras["center_crop_scale"])
    kwargs["image_pipeline"] = _image_pipeline(cfg)
    return VLAConfig(**kwargs)


def _image_pipeline(cfg: Dict[str, Any]) -> str:
    """The pixels the checkpoint was trained on: a released folder (no ``specprune``
    section) saw openvla-oft's pipeline; one written by specprune names its pipeline, or,
    written before the field existed (e.g. checkpoints/pick_color), saw the torch one."""
    if "specprune" not in cfg:
        return PIPELINE_REFERENCE
    pipeline = cfg["specprune"].get("image_pipeline", PIPELINE_TORCH)
    if pipeline not in PIPELINES:
        raise CheckpointError(f"{CONFIG}: specprune.image_pipeline must be one of "
                              f"{', '.join(PIPELINES)}, got {pipeline!r}")
    return pipeline


def _image_normalisation(folder: str, kwargs_cfg: VLAConfig) -> VLAConfig:
    path = os.path.join(folder, "preprocessor_config.json")
    if not os.path.isfile(path):
        return kwargs_cfg
    pre = _read_json(folder, "preprocessor_config.json")
    if "means" in pre and "stds" in pre:
        import dataclasses
        return dataclasses.replace(kwargs_cfg, image_means=tuple(map(tuple, pre["means"])),
                                   image_stds=tuple(map(tuple, pre["stds"])))
    return kwargs_cfg


def _statistics(folder: str, unnorm_key: Optional[str]) -> Dict[str, Any]:
    stats = _read_json(folder, STATS)
    if unnorm_key is None:
        if len(stats) != 1:
            raise CheckpointError(f"{os.path.join(folder, STATS)}: several datasets "
                                  f"({', '.join(stats)}); choose one with unnorm_key")
        unnorm_key = next(iter(stats))
    if unnorm_key not in stats:
        raise CheckpointError(f"{os.path.join(folder, STATS)}: no dataset {unnorm_key!r}")
    entry = stats[unnorm_key]
    for part in ("action", "proprio"):
        if part not in entry:
            raise CheckpointError(f"{os.path.join(folder, STATS)}: {unnorm_key}.{part} missing")
    return entry


def load_checkpoint(folder: str, layout: Optional[str] = None,
                    num_images: Optional[int] = None, unnorm_key: Optional[str] = None,
                    dtype: torch.dtype = torch.float32
                    ) -> Tuple[OpenVLAOFT, Any, Dict[str, Any], ActionLayout]:
    """(model, tokenizer, dataset statistics entry, action layout) from a folder; the
    model is built in ``dtype`` (a 7B model never exists in float32 on the way to
    bfloat16) and the stored weights are cast into it on load."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"checkpoint folder {folder!r} does not exist")
    cfg = _read_json(folder, CONFIG)
    for component, why in UNSUPPORTED.items():
        path = _component_file(folder, component, required=False)
        if path is not None:
            raise CheckpointError(f"{path}: {why}")
    head_path = _component_file(folder, "action_head", required=True)
    head = _load_component(head_path)
    proprio_path = _component_file(folder, "proprio_projector", required=False)
    proprio = _load_component(proprio_path) if proprio_path else {}
    lay = _pick_layout(head, head_path, layout)
    proprio_dim = int(proprio["fc1.weight"].shape[1]) if "fc1.weight" in proprio else 0
    vla_cfg = _vla_config(cfg, lay, proprio_dim, num_images or lay.num_images)
    model = _build(_image_normalisation(folder, vla_cfg), dtype)
    backbone, origin = _load_backbone(folder)
    _assign(_Backbone(model), backbone, origin)
    _assign(model.action_head, head, {k: head_path for k in head}, "action_head.")
    if model.proprio_projector is not None:
        _assign(model.proprio_projector, proprio, {k: proprio_path for k in proprio},
                "proprio_projector.")
    statistics = _statistics(folder, unnorm_key)
    try:
        tokenizer = load_tokenizer(folder)
    except Exception as err:  # transformers raises OSError / ValueError variants
        raise CheckpointError(f"{folder}: tokenizer files missing or unreadable ({err})") from err
    return model.eval(), tokenizer, statistics, lay


def checkpoint_depth(folder: str) -> int:
    """The number of decoder (Llama) layers of the checkpoint in ``folder``, read from its
    config.json without loading any weights."""
    layers = _read_json(folder, CONFIG).get("text_config", {}).get("num_hidden_layers")
    if not isinstance(layers, int) or layers < 1:
        raise CheckpointError(f"{os.path.join(folder, CONFIG)}: text_config.num_hidden_layers "
                              f"is {layers!r}, not a positive integer")
    return layers


def load_tokenizer(folder: str) -> Any:
    """The folder's tokenizer as the reference (transformers 4.40) reads it.

    With a ``tokenizer.json`` (what every fast tokenizer, and so every released folder,
    saves), the backend is that file as is, with the special tokens and settings of
    tokenizer_config.json / special_tokens_map.json: transformers 5's class named there
    (``LlamaTokenizer``) would instead rebuild a BPE from the vocabulary, which splits the
    prompt into characters when the file holds a sentencepiece Unigram model. Without a
    tokenizer.json, AutoTokenizer builds one from the other files. Neither path reads
    config.json as a transformers model config: released folders name remote code there
    (``auto_map``), which makes AutoTokenizer ask a trust_remote_code question on stdin (a
    robot node would wait on it) and warn about the unknown ``openvla`` type."""
    if os.path.isfile(os.path.join(folder, TOKENIZER_FILE)):
        return PreTrainedTokenizerFast.from_pretrained(folder, **_llama_flags(folder))
    return AutoTokenizer.from_pretrained(folder, config=PreTrainedConfig(),
                                         trust_remote_code=False)


def _llama_flags(folder: str) -> Dict[str, bool]:
    """add_bos_token / add_eos_token of a Llama tokenizer_config.json: 4.40's
    LlamaTokenizerFast rebuilds tokenizer.json's post-processor from them (transformers 5
    drops them when a tokenizer.json exists; passed explicitly, it rebuilds it too)."""
    if not os.path.isfile(os.path.join(folder, TOKENIZER_CONFIG)):
        return {}
    settings = _read_json(folder, TOKENIZER_CONFIG)
    if settings.get("tokenizer_class") not in ("LlamaTokenizer", "LlamaTokenizerFast"):
        return {}
    return {k: bool(settings[k]) for k in ("add_bos_token", "add_eos_token") if k in settings}


def _build(cfg: VLAConfig, dtype: torch.dtype) -> OpenVLAOFT:
    """The model with its parameters created in ``dtype`` (buffers that transformers
    builds in float32, the rotary frequencies, stay float32)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return OpenVLAOFT(cfg)
    finally:
        torch.set_default_dtype(previous)


def _pick_layout(head: Dict[str, torch.Tensor], path: str, name: Optional[str]) -> ActionLayout:
    if "model.fc2.weight" not in head:
        raise CheckpointError(f"{path}: missing key model.fc2.weight")
    action_dim = int(head["model.fc2.weight"].shape[0])
    if name is None:
        matches = [k for k, v in LAYOUTS.items() if v.action_dim == action_dim]
        if not matches:
            raise CheckpointError(f"{path}: action dim {action_dim} matches no known layout")
        name = matches[0]
    if name not in LAYOUTS:
        raise CheckpointError(f"unknown layout {name!r}; choose one of {', '.join(LAYOUTS)}")
    if LAYOUTS[name].action_dim != action_dim:
        raise CheckpointError(f"{path}: action dim {action_dim} does not fit layout {name}")
    return LAYOUTS[name]


class _Backbone(nn.Module):
    """View of the parts stored in the safetensors files (not the head / proprio)."""

    def __init__(self, model: OpenVLAOFT) -> None:
        super().__init__()
        self.vision_backbone = model.vision_backbone
        self.projector = model.projector
        self.language_model = model.language_model


def save_checkpoint(folder: str, model: OpenVLAOFT, tokenizer: Any,
                    statistics: Dict[str, Any], dataset: str = "synthetic",
                    step: int = 0) -> None:
    """Write a folder in the released layout (single safetensors file)."""
    os.makedirs(folder, exist_ok=True)
    cfg = model.cfg
    backbone = {k: v.detach().contiguous() for k, v in _Backbone(model).state_dict().items()}
    save_file(backbone, os.path.join(folder, SINGLE), metadata={"format": "pt"})
    torch.save(model.action_head.state_dict(),
               os.path.join(folder, f"action_head--{step}_checkpoint.pt"))
    if model.proprio_projector is not None:
        torch.save(model.proprio_projector.state_dict(),
                   os.path.join(folder, f"proprio_projector--{step}_checkpoint.pt"))
    _write_json(folder, CONFIG, _config_json(cfg))
    _write_json(folder, STATS, {dataset: statistics})
    _write_json(folder, "preprocessor_config.json", {
        "image_processor_type": "PrismaticImageProcessor", "image_resize_strategy":
        "resize-naive", "input_sizes": [[3, cfg.image_size, cfg.image_size]] * 2,
        "interpolations": ["bicubic", "bicubic"], "means": cfg.image_means,
        "stds": cfg.image_stds, "use_fused_vision_backbone": True})
    tokenizer.save_pretrained(folder)


def _config_json(cfg: VLAConfig) -> Dict[str, Any]:
    return {
        "architectures": ["OpenVLAForActionPrediction"], "model_type": "openvla",
        "use_fused_vision_backbone": True, "image_resize_strategy": "resize-naive",
        "arch_specifier": "no-align+fused-gelu-mlp", "llm_backbone_id": "llama2-7b-pure",
        "vision_backbone_id": "dinosiglip-vit-so-224px", "n_action_bins": 256,
        "timm_model_ids": list(cfg.timm_model_ids),
        "timm_override_act_layers": list(cfg.timm_override_act_layers),
        "image_sizes": [cfg.image_size, cfg.image_size], "pad_to_multiple_of": 64,
        "pad_token_id": cfg.text_config.get("pad_token_id"),
        "text_config": dict(cfg.text_config, model_type="llama"),
        "specprune": {"timm_overrides": list(cfg.timm_overrides),
                      "empty_token_id": cfg.empty_token_id,
                      "center_crop_scale": cfg.center_crop_scale,
                      "image_pipeline": cfg.image_pipeline},
    }


def _write_json(folder: str, name: str, data: Dict[str, Any]) -> None:
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)


def training_summary(folder: str) -> Optional[Dict[str, Any]]:
    """The TRAINING_SUMMARY of a checkpoint ``folder`` (None where there is none: a released
    checkpoint, a preset name)."""
    path = os.path.join(folder, TRAINING_SUMMARY)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)
