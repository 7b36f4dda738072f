"""`python -m evaluation ifeval` equals lm-eval's own IFEval scoring (``process_results`` and
``agg_inst_level_acc``) on responses to all 541 shipped IFEval prompts, which cover every
instruction type, written to pass some instructions and fail others, strictly and loosely."""

import json
import string

import pytest

from evaluation.cli import main
from evaluation.files import read_prompts, shipped_file
from evaluation.ifeval import METRICS, score_ifeval
from rewards.nltk_data import ensure_punkt_tab

RICH = (
    "Sure, here it is:\n<<A Title>>\n*highlighted part* and *another one* and *a third*, with commas.\n"
    "* bullet one\n* bullet two\nSECTION 1\nWords and words [name] [place].\n***\nSECTION 2\nMore words.\n"
    "P.S. bye\nHope this helps"
)


def _fitted(kwargs_list, prompt):
    """A response that tries to follow what the kwargs ask, inside a chatty first and last line,
    so that strict and loose verdicts differ."""
    parts = []
    for kwargs in kwargs_list:
        for key, value in kwargs.items():
            if key == "prompt_to_repeat":
                parts.insert(0, value)
            elif key in ("keywords", "forbidden_words") and value:
                parts.append(" ".join(value) if key == "keywords" else "")
            elif key in ("keyword", "first_word") and value:
                parts.append(f"{value} " * int(kwargs.get("frequency") or 1))
            elif key == "section_spliter" and value:
                parts += [f"{value} 1\nfirst part", f"{value} 2\nsecond part"]
            elif key == "postscript_marker" and value:
                parts.append(f"{value} a note")
            elif key == "end_phrase" and value:
                parts.append(value)
    body = "\n\n".join(p for p in parts if p) or prompt
    return f"**Here you go:**\n{body}\n**Done**"


def _responses(prompts, path):
    lines = []
    for i, item in enumerate(prompts):
        fitted = _fitted(item.metadata["kwargs"], item.prompt)
        variants = [RICH, fitted, fitted.lower().replace(",", "") if i % 2 else fitted.upper()]
        if i % 50 == 0:
            variants[2] = ""  # empty answers follow nothing
        if any(not str(kw.get("letter", "a")).isalpha() for kw in item.metadata["kwargs"]):
            # IFEval asks for '#' and '!' in two letter_frequency instructions, which its checker replaces
            # with a random letter on every call: there, only an answer rich in every letter is deterministic.
            variants = [string.ascii_letters * 10] * 3
        for sample, text in enumerate(variants):
            lines.append(json.dumps({"id": item.id, "sample": sample, "prompt": item.prompt, "response": text}))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def ifeval_case(tmp_path_factory):
    prompts = read_prompts("ifeval")
    path = tmp_path_factory.mktemp("ifeval") / "responses.jsonl"
    _responses(prompts, path)
    return prompts, path


def test_ifeval_equals_lm_eval_on_every_instruction_type(ifeval_case, tmp_path):
    ensure_punkt_tab()  # lm-eval's checkers need it before they are imported
    from langdetect import DetectorFactory
    from lm_eval.tasks.ifeval.utils import agg_inst_level_acc, process_results

    # langdetect (IFEval's language and case checks) samples at random unless seeded; the scorer
    # under test seeds it the same way, so both sides see the same detector.
    DetectorFactory.seed = 0

    prompts, path = ifeval_case
    docs = {item.id: {"key": item.id, "prompt": item.prompt, **item.metadata} for item in prompts}
    per_doc = [
        process_results(docs[line["id"]], [line["response"]]) for line in map(json.loads, path.read_text().splitlines())
    ]
    expected = {
        "prompt_level_strict_acc": sum(d["prompt_level_strict_acc"] for d in per_doc) / len(per_doc),
        "inst_level_strict_acc": agg_inst_level_acc([d["inst_level_strict_acc"] for d in per_doc]),
        "prompt_level_loose_acc": sum(d["prompt_level_loose_acc"] for d in per_doc) / len(per_doc),
        "inst_level_loose_acc": agg_inst_level_acc([d["inst_level_loose_acc"] for d in per_doc]),
    }

    output = tmp_path / "result.json"
    assert main(["ifeval", "--responses", str(path), "--prompts", "ifeval", "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["metrics"] == expected
    assert result["responses"] == len(per_doc) == 3 * 541

    # every instruction type is covered, and the per-type table is lm-eval's verdicts counted by type
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    by_type = {}
    for line, doc in zip(lines, per_doc, strict=True):
        for name, s, lo in zip(
            docs[line["id"]]["instruction_id_list"],
            doc["inst_level_strict_acc"],
            doc["inst_level_loose_acc"],
            strict=True,
        ):
            count, strict, loose = by_type.get(name, (0, 0, 0))
            by_type[name] = (count + 1, strict + s, loose + lo)
    from lm_eval.tasks.ifeval.instructions_registry import INSTRUCTION_DICT

    assert set(result["per_instruction"]) == set(INSTRUCTION_DICT) == set(by_type)
    for name, (count, strict, loose) in by_type.items():
        assert result["per_instruction"][name] == {
            "count": count,
            "strict_acc": strict / count,
            "loose_acc": loose / count,
        }
    # the responses exercise both outcomes, and loose differs from strict
    assert 0 < expected["prompt_level_strict_acc"] < expected["prompt_level_loose_acc"] < 1
    assert sum(1 for n, (c, s, lo) in by_type.items() if 0 < s) >= 20


def test_ifeval_reads_instructions_carried_by_the_responses(tmp_path):
    item = read_prompts("ifeval")[1]  # "... You are not allowed to use any commas in your response."
    lines = [
        {"id": item.id, "sample": 0, "prompt": item.prompt, "response": "no commas here", **item.metadata},
        {"id": item.id, "sample": 1, "prompt": item.prompt, "response": "one, comma", **item.metadata},
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = score_ifeval(str(path))
    assert {name: result["metrics"][name] for name in METRICS} == dict.fromkeys(METRICS, 0.5)


def test_ifeval_errors_name_file_row_and_key(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"id": 1000, "response": "x"}) + "\n" + json.dumps({"id": 7, "response": "y"}) + "\n")
    assert main(["ifeval", "--responses", str(path), "--prompts", "ifeval"]) == 2
    assert f"{path} row 2: id 7 is not in {shipped_file('ifeval')}" in capsys.readouterr().err
    assert main(["ifeval", "--responses", str(path)]) == 2
    assert f"{path} row 1: missing key(s) ['instruction_id_list', 'kwargs']" in capsys.readouterr().err
    path.write_text(json.dumps({"id": 1000}) + "\n")
    assert main(["ifeval", "--responses", str(path), "--prompts", "ifeval"]) == 2
    assert f"{path} row 1: missing key 'response'" in capsys.readouterr().err
