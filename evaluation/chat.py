"""Evaluation's use of the one chat client (``rewards.chat``): the policy, the critic and the pairwise judge
are all OpenAI-compatible servers reached through ``ChatClient`` with the flags of ``add_http_args``.
What is evaluation's own: ``load_json_answer``, the JSON a critic or judge was asked for.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rewards.chat import ChatClient, ChatError, UnusableAnswer, add_http_args

__all__ = ["ChatClient", "ChatError", "UnusableAnswer", "add_http_args", "load_json_answer"]

_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)


def load_json_answer(text: str, who: str) -> Any:
    """The JSON a judge or critic was asked for: the whole answer, or the one ```json fenced object in it.

    ``who`` names the model in the ValueError raised when it is not JSON.
    """
    body = text.strip()
    fenced = _FENCE.findall(body)
    if len(fenced) == 1:
        body = fenced[0]
    try:
        return json.loads(body)
    except json.JSONDecodeError as err:
        raise ValueError(f"{who} answer is not JSON: {text[:200]!r}") from err
