"""A preset name or a checkpoint folder -> (model, tokenizer, statistics, layout); device
and dtype resolution shared by inference and training; ``place_model`` puts a model on
its device and dtype the way the reference's ``from_pretrained(torch_dtype=bfloat16)``
leaves it (rotary frequencies in float32)."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import nn

from specprune.model.checkpoint import checkpoint_depth, load_checkpoint
from specprune.model.modeling_vla import OpenVLAOFT
from specprune.model.presets import (LAYOUTS, PRESETS, ActionLayout, preset_config, preset_depth,
                                     synthetic_statistics)
from specprune.model.tiny_tokenizer import build_tokenizer, empty_token_id

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Buffers that stay float32 whatever the model dtype: transformers builds the Llama rotary
# frequencies in float32 and from_pretrained(torch_dtype=...) only casts loaded weights,
# so the reference keeps them; casting them to bfloat16 rounds every frequency (an angle
# error that grows with the position) before the rotary module upcasts them again.
FLOAT32_BUFFERS = ("inv_freq", "original_inv_freq")


def resolve_device(device: str) -> str:
    """'auto' -> cuda when available, else cpu; an unavailable cuda is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return device


def resolve_dtype(dtype: Union[str, torch.dtype], device: str) -> torch.dtype:
    """'auto' -> bfloat16 on GPU, float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(_DTYPES)}; got {dtype!r}")
    return _DTYPES[dtype]


def place_model(model: nn.Module, device: Union[str, torch.device],
                dtype: torch.dtype) -> nn.Module:
    """Move to ``device`` and cast parameters and buffers to ``dtype``, except the
    FLOAT32_BUFFERS (returns the same module)."""
    model.to(device=device)
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if param.is_floating_point() and param.dtype != dtype:
                param.data = param.data.to(dtype)
        for name, buf in list(module.named_buffers(recurse=False)):
            if buf.is_floating_point() and name not in FLOAT32_BUFFERS:
                setattr(module, name, buf.to(dtype))
    return model


def load_model(path_or_preset: str, layout: Optional[str] = None,
               unnorm_key: Optional[str] = None, seed: int = 0,
               dtype: torch.dtype = torch.float32
               ) -> Tuple[OpenVLAOFT, Any, Dict[str, Any], ActionLayout]:
    """A preset (random weights, seeded, built in float32 so the seed gives the same
    weights in every dtype) or a checkpoint folder (built directly in ``dtype``, its
    weights cast on load as the reference's from_pretrained does) -> (model, tokenizer,
    the chosen dataset statistics, action layout)."""
    if path_or_preset in PRESETS:
        lay_name = layout or "libero"
        tokenizer = build_tokenizer()
        torch.manual_seed(seed)
        model = OpenVLAOFT(preset_config(path_or_preset, len(tokenizer),
                                         empty_token_id(tokenizer), lay_name))
        return model, tokenizer, synthetic_statistics(lay_name)["synthetic"], LAYOUTS[lay_name]
    if os.path.isdir(path_or_preset):
        return load_checkpoint(path_or_preset, layout, unnorm_key=unnorm_key, dtype=dtype)
    raise _neither(path_or_preset)


def decoder_depth(path_or_preset: str) -> int:
    """The number of decoder layers of a preset or a checkpoint folder, without building
    the model (what a runner needs to know which layers a node prunes at)."""
    if path_or_preset in PRESETS:
        return preset_depth(path_or_preset)
    if os.path.isdir(path_or_preset):
        return checkpoint_depth(path_or_preset)
    raise _neither(path_or_preset)


def _neither(path_or_preset: str) -> FileNotFoundError:
    return FileNotFoundError(f"{path_or_preset!r} is neither a checkpoint folder nor a preset "
                             f"({', '.join(PRESETS)})")
