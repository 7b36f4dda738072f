"""One trajectory as verl's agent loop hands it to a reward manager, for tests and benchmarks.

verl's ``RewardLoopManager`` scores each trajectory as a one-row ``DataProto``: the chat-templated
prompt ids, the response ids (ending in EOS, right-padded as in verl's batches), the attention
mask over both, and the row's ``raw_prompt``, ``reward_model`` and ``data_source``. Tests of the
reward manager and the reward benchmarks build the same rows from text with ``trajectory_row``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from verl import DataProto

from rewards.spec import ConstraintSpec


def chat_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The prompt's token ids as the agent loop builds them (chat template, generation prompt)."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    # transformers 5 returns a BatchEncoding here, 4.x a plain list.
    return list(ids["input_ids"]) if hasattr(ids, "keys") else list(ids)


def trajectory_row(
    tokenizer,
    task: str,
    response: str,
    reward_model: ConstraintSpec | Mapping,
    *,
    data_source: str,
    pad: int = 0,
) -> DataProto:
    """A one-row ``DataProto`` for the user turn ``task`` answered by ``response``.

    ``reward_model`` is a ``ConstraintSpec`` (stored as verl's ``{"style": "rule", "ground_truth":
    ...}``) or a mapping used as the row's ``reward_model`` as it is (to test malformed rows).
    ``pad`` right-pads the response with that many pad tokens, masked out."""
    messages = [{"role": "user", "content": task}]
    prompt_ids = chat_prompt_ids(tokenizer, messages)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    responses = torch.tensor(response_ids + [tokenizer.pad_token_id] * pad)
    attention = torch.tensor([1] * (len(prompt_ids) + len(response_ids)) + [0] * pad, dtype=torch.int64)
    if isinstance(reward_model, ConstraintSpec):
        reward_model = {"style": "rule", "ground_truth": reward_model.to_ground_truth()}
    return DataProto.from_dict(
        tensors={
            "prompts": torch.tensor([prompt_ids]),
            "responses": responses[None],
            "attention_mask": attention[None],
        },
        non_tensors={
            "raw_prompt": np.array([messages], dtype=object),
            "reward_model": np.array([reward_model], dtype=object),
            "data_source": np.array([data_source], dtype=object),
        },
    )
