"""The OpenVLA prompt, its token ids, and which of them are task words (the queries).

The released code scores visual tokens with the attention of the task-description
tokens only (it skips "In: What action should the robot take to"). Here the task span
is found from the tokenizer's character offsets, so any tokenizer works.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

PROMPT_TEMPLATE = "In: What action should the robot take to {task}?\nOut:"


@dataclass(frozen=True)
class EncodedPrompt:
    ids: Tuple[int, ...]  # starts with BOS, ends with the empty token
    task_ids: Tuple[int, ...]  # indices into ids of the task-description tokens


def check_instruction(instruction: object) -> str:
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
    return instruction.strip()


def encode_prompt(tokenizer, instruction: str, empty_token_id: int) -> EncodedPrompt:
    """Token ids of the prompt for ``instruction`` (lower-cased, as the reference does)."""
    task = check_instruction(instruction).lower()
    text = PROMPT_TEMPLATE.format(task=task)
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
    ids = list(enc["input_ids"])
    begin = len(PROMPT_TEMPLATE.split("{task}")[0])
    end = begin + len(task)
    task_ids = [i for i, (a, b) in enumerate(enc["offset_mapping"])
                if b > a and a < end and b > begin]
    if ids[-1] != empty_token_id:
        ids.append(empty_token_id)
    if not task_ids:  # nothing recognisable: fall back to the last prompt token
        task_ids = [len(ids) - 1]
    return EncodedPrompt(tuple(ids), tuple(task_ids))
