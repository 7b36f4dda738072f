"""The gold referee (``evaluation.referee``) behind the chat protocol, for ``evaluation writingbench``
and ``evaluation pairwise``: a stand-in for human raters, not a model.

It recognises the two commands' requests by their system prompts and reads the writing request
and the response(s) back from the user turn those commands build:

- a WritingBench critic request gets ``{"score": <1-10>, "reason": ...}``: the referee's score on
  the 1-10 scale, the same for every criterion (the referee has one notion of quality);
- a pairwise request gets ``{"winner": "first"|"second"|"tie", ...}``: the higher referee score
  wins; scores within ``tie_margin`` of each other tie. Deterministic, so a pair judged in both
  orders never flips with the position.

Any other request is answered 400. A response that itself contains the commands' section headings
can shift where the reader splits; the referee is a stand-in and says so.

    python -m recipe.rlmr.dev.servers.referee [--port 0] [--lo 40 --hi 110]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from evaluation import pairwise, writingbench
from evaluation.referee import DEFAULT_BAND, RefereeBand, critic_grade, score
from recipe.rlmr.dev.servers.chat import ScriptedChatServer

REFEREE_MODEL = "referee"
TIE_MARGIN = 0.01


class NotARefereeRequest(ValueError):
    pass


def _between(text: str, start: str, end: str | None) -> str:
    head = text.index(start) + len(start)
    if end is None:
        return text[head:]
    return text[head : text.rindex(end)] if end in text[head:] else text[head:]


def read_critic_request(user: str) -> tuple[str, str]:
    """(writing request, response) from ``writingbench.build_messages``' user turn."""
    query_and_response = _between(user, "## Writing request\n", "\n\n## Criterion\n")
    query, sep, response = query_and_response.partition("\n\n## Response\n")
    if not sep:
        raise NotARefereeRequest("critic request without a '## Response' section")
    return query, response


def read_pairwise_request(user: str) -> tuple[str, str, str]:
    """(writing request, first, second) from ``pairwise.build_messages``' user turn."""
    body = _between(user, "## Writing request\n", "\n\nWhich response is better? Your JSON:")
    prompt, sep, rest = body.partition("\n\n## First response\n")
    first, sep2, second = rest.rpartition("\n\n## Second response\n")
    if not (sep and sep2):
        raise NotARefereeRequest("pairwise request without both response sections")
    return prompt, first, second


def answer(body: dict[str, Any], band: RefereeBand = DEFAULT_BAND, tie_margin: float = TIE_MARGIN) -> str:
    """The referee's chat answer to one request body."""
    messages = body.get("messages") or []
    system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
    user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    if system == writingbench.SYSTEM_PROMPT:
        query, response = read_critic_request(user)
        graded = score(query, response, band)
        reason = f"referee {graded.score:.3f}: fit {graded.fit:.2f}, distinct2 {graded.distinct2:.2f}, "
        reason += f"relevance {graded.relevance:.2f}, complete {graded.complete:.0f}"
        return json.dumps({"score": critic_grade(graded.score), "reason": reason})
    if system == pairwise.SYSTEM_PROMPT:
        prompt, first, second = read_pairwise_request(user)
        a, b = score(prompt, first, band).score, score(prompt, second, band).score
        winner = "tie" if abs(a - b) <= tie_margin else ("first" if a > b else "second")
        return json.dumps({"winner": winner, "reason": f"referee {a:.3f} vs {b:.3f}"})
    raise NotARefereeRequest("not a writingbench critic or pairwise request (unknown system prompt)")


class RefereeServer(ScriptedChatServer):
    """``ScriptedChatServer`` answering by the referee's rule; other requests get HTTP 400."""

    def __init__(self, band: RefereeBand = DEFAULT_BAND, tie_margin: float = TIE_MARGIN):
        super().__init__(lambda body: answer(body, band, tie_margin), keep_bodies=False)
        self.fault_for = self._refuse_unknown

    def _refuse_unknown(self, body: dict[str, Any]) -> str | None:
        try:
            answer(body)
        except (NotARefereeRequest, ValueError):
            return "bad_request"
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lo", type=int, default=RefereeBand.lo, help="length band's lower end (words)")
    parser.add_argument("--hi", type=int, default=RefereeBand.hi, help="length band's upper end (words)")
    args = parser.parse_args(argv)
    RefereeServer(RefereeBand(args.lo, args.hi)).serve_forever(args.port)


if __name__ == "__main__":
    main()
