"""The writing reward model's input text: one contract, imported by RM training and the RM client.

A (chat prompt, response) pair becomes text the way verl builds it for its managed reward model:
the prompt's messages plus an assistant turn holding the response, through the reward model's own
chat template (``add_generation_prompt=False``), with a leading BOS string removed. A text longer
than ``max_input_tokens`` keeps its LAST tokens (the end of the response, where the quality
verdict is read), decoded back to text.

The server tokenizes the text it receives with ``add_special_tokens=False``
(``tokenize_rm_input``), so training must too: ``rewards.rm_training`` formats every pair with
``format_rm_input`` and tokenizes it with ``tokenize_rm_input``, and ``rewards.writing_rm`` sends
``format_rm_input``'s text. Both sides therefore score the same tokens.
"""

from __future__ import annotations

from typing import Any

# Re-encoding a decoded tail can merge or split tokens differently at the cut; a few more
# left tokens are dropped until the re-encoded text fits. This bounds how many tries that takes.
_MAX_RECUT = 8


def render_rm_text(tokenizer: Any, messages: list[dict[str, str]], response: str) -> str:
    """The untruncated reward-model text for ``messages`` + an assistant ``response``."""
    chat = list(messages) + [{"role": "assistant", "content": response}]
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos):
        text = text[len(bos) :]
    return text


def tokenize_rm_input(tokenizer: Any, text: str) -> list[int]:
    """Token ids of an RM input text, as the serving side computes them (no special tokens added)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def truncate_rm_text(tokenizer: Any, text: str, max_input_tokens: int) -> tuple[str, bool]:
    """``text`` cut to its last ``max_input_tokens`` tokens; returns (text, whether it was cut).

    The cut text, re-tokenized by the server, is guaranteed to be at most ``max_input_tokens``
    tokens long (the server never has to truncate it again, on either side)."""
    # Byte-level BPE and byte-fallback tokenizers spend at least one byte per token, so a text with
    # no more bytes than the limit cannot be over it: skip tokenizing it.
    if len(text.encode("utf-8")) <= max_input_tokens:
        return text, False
    ids = tokenize_rm_input(tokenizer, text)
    if len(ids) <= max_input_tokens:
        return text, False
    keep = max_input_tokens
    for _ in range(_MAX_RECUT):
        cut = tokenizer.decode(ids[-keep:])
        if len(tokenize_rm_input(tokenizer, cut)) <= max_input_tokens:
            return cut, True
        keep -= 1
    return cut, True


def format_rm_input(
    tokenizer: Any, messages: list[dict[str, str]], response: str, max_input_tokens: int
) -> tuple[str, bool]:
    """The text the reward model scores for (``messages``, ``response``), and whether it was cut."""
    return truncate_rm_text(tokenizer, render_rm_text(tokenizer, messages, response), max_input_tokens)
