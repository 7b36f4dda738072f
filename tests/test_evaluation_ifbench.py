"""``evaluation ifbench`` on the 300 shipped IFBench prompts against if-verifiable's own per-sample evaluation."""

import json

import pytest

from evaluation.cli import main
from evaluation.files import read_prompts
from evaluation.ifbench import ifbench_registry, score_ifbench


@pytest.fixture(scope="module")
def responses(tmp_path_factory):
    """A response per shipped prompt, varied so some instructions pass and some fail."""
    items = read_prompts("ifbench")
    texts = [
        "hello world. this is a short answer in lowercase.",
        "Here Is A Title\n\nOne two three, four five six! Seven eight nine?\n* a point\n* another point",
        "A plain sentence, nothing special about it",
        '"The whole answer sits in quotes, as some constraints ask."',
    ]
    path = tmp_path_factory.mktemp("ifbench") / "responses.jsonl"
    rows = [{"id": item.id, "response": texts[i % len(texts)]} for i, item in enumerate(items)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, items, [r["response"] for r in rows]


def test_figures_equal_if_verifiables_own_evaluation(responses):
    from if_verifiable.api import evaluate_output_for_sample
    from if_verifiable.types import IFBenchSample

    path, items, texts = responses
    ifbench_registry()  # the checkers imported offline, as the scorer does
    strict, loose, unscorable = [], [], 0
    for item, text in zip(items, texts, strict=True):
        sample = IFBenchSample(
            key=item.id, prompt=item.prompt, **{k: item.metadata[k] for k in ("instruction_id_list", "kwargs")}
        )
        try:
            _, scores = evaluate_output_for_sample("ifbench", sample, text)
        except LookupError:
            unscorable += 1
            continue
        strict.append(scores.binary_strict)
        loose.append(scores.binary_loose)
    result = score_ifbench(str(path))
    assert result["responses"] == 300
    assert result["unscorable_offline"] == unscorable == 18  # DESIGN.md 3b: stopwords and the tagger
    assert result["scored"] == len(strict) == 282
    assert result["metrics"]["prompt_level_strict_acc"] == pytest.approx(sum(strict) / len(strict))
    assert result["metrics"]["prompt_level_loose_acc"] == pytest.approx(sum(loose) / len(loose))
    assert result["metrics"]["prompt_level_strict_acc"] > 0
    assert 0 < result["metrics"]["prompt_level_loose_acc"] < 1


def test_cli_writes_the_result_and_counts_unscorable_apart(responses, tmp_path, capsys):
    path, _, _ = responses
    assert main(["ifbench", "--responses", str(path), "--output", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "prompt_level_strict_acc" in out and "need NLTK data not available offline" in out
    assert json.loads((tmp_path / "r.json").read_text())["unscorable_offline"] == 18


def test_an_unknown_instruction_is_an_input_error(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"key": 1, "prompt": "x", "instruction_id_list": ["no:such"], "kwargs": [{}]}) + "\n")
    answers = tmp_path / "r.jsonl"
    answers.write_text(json.dumps({"id": 1, "response": "y"}) + "\n")
    assert main(["ifbench", "--responses", str(answers), "--prompts", str(prompts)]) == 2
    assert "no:such" in capsys.readouterr().err


def test_an_empty_response_fails_every_instruction(tmp_path):
    answers = tmp_path / "r.jsonl"
    item = read_prompts("ifbench")[0]
    answers.write_text(json.dumps({"id": item.id, "response": ""}) + "\n")
    result = score_ifbench(str(answers))
    assert result["scored"] == 1 and result["metrics"]["inst_level_loose_acc"] == 0.0
    assert result["instructions"] == len(item.metadata["instruction_id_list"])
