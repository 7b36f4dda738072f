"""The data prep CLI on real files: every input format, the three row shapes, rejects with
their reasons, deterministic split and de-duplication, atomic outputs, augmentation whose
phrasing and spec agree, stats and validation through verl's own dataset class."""

import csv
import json
import random
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_prep.augment import CATALOG, TEMPLATES, augment_prompt, row_rng, write_compliant_response
from data_prep.cli import build_parser, main
from data_prep.convert import SCHEMA, ConvertOptions, convert
from data_prep.shapes import FieldMap
from recipe.rlmr.dev.tiny_assets import build_tokenizer
from rewards.constraints import check_instructions
from rewards.spec import ConstraintSpec

GOOD = [
    {
        "prompt": "Write a poem about rain.",
        "constraints": [{"type": "rule", "instruction_id": "rlmr:word_range", "kwargs": {"max_words": 80}}],
    },
    {
        "prompt": [{"role": "system", "content": "You are a poet."}, {"role": "user", "content": "A haiku on snow."}],
        "constraints": ["It has three lines."],
    },
    {
        "prompt": "Write 300+ words about a river.",
        "instruction_id_list": ["length_constraints:number_words", "punctuation:no_comma"],
        "kwargs": [{"relation": "at least", "num_words": 300}, {}],
    },
    {
        "query": "写一篇关于秋天的散文。",
        "checklist": [{"name": "意境", "criteria_description": "描写有画面感"}, "不少于三段"],
    },
]
BAD = [
    ({"prompt": "   "}, "empty_prompt"),
    (
        {"prompt": "x", "constraints": [{"type": "rule", "instruction_id": "length_constraints:no_such"}]},
        "unknown_instruction_id",
    ),
    (
        {"prompt": "y", "instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"num_words": 5}]},
        "bad_kwargs",
    ),
    ({"prompt": "z", "constraints": "{oops"}, "bad_constraints"),
    ({"text": "no prompt field"}, "missing_field"),
    ({"prompt": "WRITE a poem   about rain."}, "duplicate"),  # same as GOOD[0] once normalised
]


def write_jsonl(path, records, extra_lines=()):
    with open(path, "wb") as handle:
        for record in records:
            handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode())
        for line in extra_lines:
            handle.write(line + b"\n")
    return str(path)


def read_parquet(path):
    return pq.read_table(path).to_pylist()


def run_convert(tmp_path, inputs, **options):
    return convert(ConvertOptions(inputs=inputs, output_dir=str(tmp_path / "out"), progress=False, **options))


def test_converts_every_shape_and_rejects_each_bad_row_with_its_reason(tmp_path):
    source = write_jsonl(
        tmp_path / "mixed.jsonl",
        GOOD + [record for record, _ in BAD],
        extra_lines=[b"{not json", b'{"prompt": "\xff"}'],
    )
    summary = run_convert(tmp_path, [source], val_ratio=0.0)
    rows = read_parquet(tmp_path / "out" / "train.parquet")
    assert len(rows) == len(GOOD) and summary.kept["train"] == len(GOOD)
    assert [row["extra_info"]["shape"] for row in rows] == ["generic", "generic", "ifeval", "writingbench"]
    assert [row["extra_info"]["source_row"] for row in rows] == [1, 2, 3, 4]
    assert [row["extra_info"]["index"] for row in rows] == [0, 1, 2, 3]
    assert rows[1]["prompt"][0] == {"role": "system", "content": "You are a poet."}
    specs = [ConstraintSpec.parse(row["reward_model"]["ground_truth"]) for row in rows]
    assert specs[0].rules[0].kwargs == {"max_words": 80}
    assert [j.text for j in specs[1].judged] == ["It has three lines."]
    assert [r.instruction_id for r in specs[2].rules] == ["length_constraints:number_words", "punctuation:no_comma"]
    assert [j.text for j in specs[3].judged] == ["意境: 描写有画面感", "不少于三段"]

    rejects = [json.loads(line) for line in open(tmp_path / "out" / "rejects.jsonl")]
    by_row = {r["row"]: r for r in rejects}
    for offset, (_, reason) in enumerate(BAD):
        assert by_row[len(GOOD) + 1 + offset]["reason"] == reason
        assert by_row[len(GOOD) + 1 + offset]["source_file"] == source
    assert by_row[len(GOOD) + len(BAD) + 1]["reason"] == "undecodable"
    assert "not UTF-8" in by_row[len(GOOD) + len(BAD) + 2]["detail"]
    assert "same prompt as" in by_row[len(GOOD) + len(BAD)]["detail"]
    assert summary.total_rejected == len(BAD) + 2  # nothing dropped silently
    assert sum(summary.kept.values()) + summary.total_rejected == len(GOOD) + len(BAD) + 2


def test_the_output_is_what_verl_reads(tmp_path):
    run_convert(tmp_path, [write_jsonl(tmp_path / "a.jsonl", GOOD)], val_ratio=0.5, seed=3)
    for split in ("train", "val"):
        table = pq.read_table(tmp_path / "out" / f"{split}.parquet")
        assert table.schema.equals(SCHEMA)
        assert all(row["extra_info"]["split"] == split for row in table.to_pylist())
    tokenizer_dir = tmp_path / "tok"
    build_tokenizer(tokenizer_dir)
    for split in ("train", "val"):
        assert main(["validate", str(tmp_path / "out" / f"{split}.parquet"), "--tokenizer", str(tokenizer_dir)]) == 0


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet", "hf"])
def test_every_input_format_gives_the_same_rows(tmp_path, fmt):
    records = [
        {
            "prompt": f"Write about the number {i}.",
            "constraints": json.dumps([{"instruction_id": "rlmr:word_range", "kwargs": {"max_words": 50 + i}}]),
        }
        for i in range(30)
    ]
    path = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, records)
    elif fmt == "json":
        path.write_text(json.dumps(records))
    elif fmt == "csv":
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["prompt", "constraints"])
            writer.writeheader()
            writer.writerows(records)
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        from datasets import Dataset

        Dataset.from_list(records).save_to_disk(str(path))
    run_convert(tmp_path, [str(path)], val_ratio=0.0)
    rows = read_parquet(tmp_path / "out" / "train.parquet")
    assert [row["prompt"][0]["content"] for row in rows] == [r["prompt"] for r in records]
    assert [
        ConstraintSpec.parse(row["reward_model"]["ground_truth"]).rules[0].kwargs["max_words"] for row in rows
    ] == list(range(50, 80))


def test_split_and_dedup_are_deterministic_and_order_free(tmp_path):
    records = [{"prompt": f"Prompt number {i}"} for i in range(400)]
    forward = write_jsonl(tmp_path / "f.jsonl", records)
    backward = write_jsonl(tmp_path / "b.jsonl", records[::-1])

    def val_prompts(source, seed):
        out = tmp_path / f"o{seed}{source[-7]}"
        convert(ConvertOptions(inputs=[source], output_dir=str(out), val_ratio=0.2, seed=seed, progress=False))
        return {row["prompt"][0]["content"] for row in read_parquet(out / "val.parquet")}

    first = val_prompts(forward, 0)
    assert first == val_prompts(backward, 0)  # input order does not matter
    assert first != val_prompts(forward, 1)  # the seed does
    assert 40 <= len(first) <= 120  # about 20% of 400


def test_token_limit_rejects_long_prompts(tmp_path):
    tokenizer_dir = tmp_path / "tok"
    build_tokenizer(tokenizer_dir)
    records = [{"prompt": "short"}, {"prompt": "long " * 400}]
    summary = run_convert(
        tmp_path,
        [write_jsonl(tmp_path / "t.jsonl", records)],
        val_ratio=0.0,
        tokenizer=str(tokenizer_dir),
        max_prompt_tokens=64,
    )
    assert summary.kept["train"] == 1 and summary.rejected == {"too_long": 1}


def test_strict_exits_nonzero_and_publishes_no_parquet(tmp_path, capsys):
    source = write_jsonl(tmp_path / "s.jsonl", GOOD + [BAD[0][0]])
    code = main(["convert", "--input", source, "--output-dir", str(tmp_path / "out"), "--strict", "--no-progress"])
    assert code == 1
    assert not (tmp_path / "out" / "train.parquet").exists()
    assert (tmp_path / "out" / "rejects.jsonl").exists()
    assert not list((tmp_path / "out").glob(".*tmp*"))
    assert "empty_prompt" in capsys.readouterr().out


def test_missing_input_is_a_clear_error_not_a_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "data_prep",
            "convert",
            "--input",
            str(tmp_path / "nope.jsonl"),
            "--output-dir",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "nope.jsonl: no such file" in result.stderr and "Traceback" not in result.stderr


def test_an_interrupted_run_leaves_no_parquet_under_the_final_name(tmp_path, monkeypatch):
    import data_prep.convert as module

    source = write_jsonl(tmp_path / "i.jsonl", [{"prompt": f"p{i}"} for i in range(50)])
    calls = {"n": 0}
    original = module.parse_record

    def interrupt_midway(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt("stopped at row 30")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "parse_record", interrupt_midway)
    with pytest.raises(KeyboardInterrupt, match="stopped at row 30"):
        run_convert(tmp_path, [source], batch_rows=8)
    assert list((tmp_path / "out").iterdir()) == []


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**6), per_prompt=st.integers(1, 5), chinese=st.booleans())
def test_augmented_phrasing_and_spec_agree(seed, per_prompt, chinese):
    """A response written to do what the appended sentences say passes every attached check."""
    prompt = "写一首关于大海的诗。" if chinese else "Write a poem about the sea."
    result = augment_prompt(prompt, random.Random(seed), per_prompt)
    assert result.prompt.startswith(prompt) and len(result.constraints) == len(result.kinds) >= 1
    response = write_compliant_response(result.draft)
    ids, kwargs = [c.instruction_id for c in result.constraints], [c.kwargs for c in result.constraints]
    assert check_instructions(response, ids, kwargs) == [True] * len(ids), (result.prompt, response)
    for constraint in result.constraints:  # every number and word the spec holds is stated in the prompt
        for value in constraint.kwargs.values():
            for item in value if isinstance(value, list) else [value]:
                assert str(item) in result.prompt


def test_every_template_has_several_phrasings_and_a_valid_spec():
    rng = random.Random(0)
    for template in CATALOG:
        assert len(template.phrasings) >= 2
        ConstraintSpec(constraints=[template.spec(template.sample(rng))])


def test_augment_cli_feeds_convert(tmp_path):
    plain = write_jsonl(
        tmp_path / "plain.jsonl", [{"prompt": f"Write a story about a {w}."} for w in ("fox", "kite", "lamp")]
    )
    out = tmp_path / "aug.jsonl"
    argv = ["augment", "--input", plain, "--output", str(out), "--per-prompt", "2", "--seed", "7"]
    argv += ["--kinds", "title,max_words,no_comma"]
    assert main(argv) == 0
    first = out.read_text()
    assert main(argv) == 0
    assert out.read_text() == first  # same seed, same output
    rows = [json.loads(line) for line in first.splitlines()]
    assert all(
        set(r["augmented_kinds"]) <= {"title", "max_words", "no_comma"} and len(r["constraints"]) == 2 for r in rows
    )
    summary = run_convert(tmp_path, [str(out)], val_ratio=0.0)
    assert summary.kept["train"] == 3 and summary.total_rejected == 0
    assert main(["augment", "--input", plain, "--output", str(out), "--kinds", "sparkle"]) == 2


def test_stats_summarises_kinds_and_lengths(tmp_path, capsys):
    run_convert(tmp_path, [write_jsonl(tmp_path / "a.jsonl", GOOD)], val_ratio=0.0)
    assert main(["stats", str(tmp_path / "out" / "train.parquet")]) == 0
    out = capsys.readouterr().out
    assert "4 rows" in out and "rlmr:word_range" in out and "judge (free text)" in out and "p50" in out


def test_validate_names_the_row_with_a_broken_spec(tmp_path, capsys):
    run_convert(tmp_path, [write_jsonl(tmp_path / "a.jsonl", GOOD)], val_ratio=0.0)
    rows = read_parquet(tmp_path / "out" / "train.parquet")
    rows[2]["reward_model"]["ground_truth"] = '{"constraints": [{"type": "rule", "instruction_id": "nope"}]}'
    broken = tmp_path / "broken.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), broken)
    build_tokenizer(tmp_path / "tok")
    assert main(["validate", str(broken), "--tokenizer", str(tmp_path / "tok")]) == 1
    assert "row 3" in capsys.readouterr().err


def test_template_kinds_are_unique():
    assert len(TEMPLATES) == len(CATALOG)
    assert row_rng(1, 2, "x").random() == row_rng(1, 2, "x").random()


def test_stats_counts_tokens_with_a_tokenizer(tmp_path, capsys):
    run_convert(tmp_path, [write_jsonl(tmp_path / "a.jsonl", GOOD)], val_ratio=0.0)
    build_tokenizer(tmp_path / "tok")
    assert main(["stats", str(tmp_path / "out" / "train.parquet"), "--tokenizer", str(tmp_path / "tok")]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("prompt length"))
    assert "tokens (chat template applied)" in line


# ---- the convert CLI's options, one by one ------------------------------------------------------


def cli_convert(tmp_path, records, *flags, name="in.jsonl"):
    """Run `convert` through the CLI on ``records``; return (exit code, kept rows, rejects by row)."""
    source = write_jsonl(tmp_path / name, records)
    out = tmp_path / "out"
    code = main(["convert", "--input", source, "--output-dir", str(out), "--val-ratio", "0", "--no-progress", *flags])
    rows = read_parquet(out / "train.parquet") if (out / "train.parquet").exists() else []
    rejects_file = out / "rejects.jsonl"
    rejects = {r["row"]: r for r in map(json.loads, rejects_file.open())} if rejects_file.exists() else {}
    return code, rows, rejects


def spec_of(row):
    return ConstraintSpec.parse(row["reward_model"]["ground_truth"])


RULE = {"type": "rule", "instruction_id": "punctuation:no_comma", "kwargs": {}}
NUMBER_WORDS = {"relation": "at least", "num_words": 300}

# field -> (flag value, a record that names the field that way, what the kept row must show)
FIELD_CASES = {
    "prompt": (
        "instruction",
        {"instruction": "Write about a fox."},
        lambda r: r["prompt"][-1]["content"] == "Write about a fox.",
    ),
    "constraints": (
        "rules",
        {"prompt": "Write.", "rules": [RULE]},
        lambda r: [c.instruction_id for c in spec_of(r).rules] == ["punctuation:no_comma"],
    ),
    "system": (
        "persona",
        {"prompt": "Write.", "persona": "You are a poet."},
        lambda r: r["prompt"][0] == {"role": "system", "content": "You are a poet."},
    ),
    "instruction_ids": (
        "ids",
        {"prompt": "Write.", "ids": ["length_constraints:number_words"], "kwargs": [NUMBER_WORDS]},
        lambda r: r["extra_info"]["shape"] == "ifeval" and [c.kwargs for c in spec_of(r).rules] == [NUMBER_WORDS],
    ),
    "kwargs": (
        "args",
        {"prompt": "Write.", "instruction_id_list": ["length_constraints:number_words"], "args": [NUMBER_WORDS]},
        lambda r: [c.kwargs for c in spec_of(r).rules] == [NUMBER_WORDS],
    ),
    "query": (
        "question",
        {"question": "写一篇散文。", "checklist": ["不少于三段"]},
        lambda r: r["prompt"][-1]["content"] == "写一篇散文。",
    ),
    "checklist": (
        "criteria",
        {"query": "写一篇散文。", "criteria": ["不少于三段"]},
        lambda r: r["extra_info"]["shape"] == "writingbench" and [j.text for j in spec_of(r).judged] == ["不少于三段"],
    ),
    "data_source": ("origin", {"prompt": "Write.", "origin": "my-set"}, lambda r: r["data_source"] == "my-set"),
}


def test_every_field_flag_has_a_case():
    convert_parser = next(
        action
        for action in build_parser()._subparsers._group_actions[0].choices.values()
        if action.prog.endswith("convert")
    )
    flags = {a.dest.removeprefix("field_") for a in convert_parser._actions if a.dest.startswith("field_")}
    assert flags == set(vars(FieldMap())) == set(FIELD_CASES)


@pytest.mark.parametrize("name", sorted(FIELD_CASES))
def test_field_flag_reads_the_renamed_column(tmp_path, name):
    value, record, shows = FIELD_CASES[name]
    flag = f"--{name.replace('_', '-')}-field"
    code, rows, rejects = cli_convert(tmp_path, [record], flag, value)
    assert code == 0 and not rejects and len(rows) == 1, rejects
    assert shows(rows[0]), rows[0]
    # without the flag the renamed column is not read: the row is rejected or does not show it
    code, rows, rejects = cli_convert(tmp_path, [record])
    assert code == 0 and (rejects or not shows(rows[0]))


def test_rejects_flag_writes_every_rejected_row_with_its_number_and_reason(tmp_path):
    records = GOOD + [record for record, _ in BAD]
    target = tmp_path / "elsewhere" / "bad-rows.jsonl"
    target.parent.mkdir()
    code, rows, _ = cli_convert(tmp_path, records, "--rejects", str(target))
    assert code == 0
    assert not (tmp_path / "out" / "rejects.jsonl").exists()  # the flag moved it, not copied it
    rejects = [json.loads(line) for line in target.open()]
    assert [(r["row"], r["reason"]) for r in rejects] == [
        (len(GOOD) + 1 + i, reason) for i, (_, reason) in enumerate(BAD)
    ]
    assert all(r["source_file"] == str(tmp_path / "in.jsonl") and r["detail"] for r in rejects)
    assert len(rows) + len(rejects) == len(records)  # every input row is kept or explained


def test_shape_flag_overrides_the_detected_shape(tmp_path):
    ifeval_row = {"prompt": "Write.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    _, rows, _ = cli_convert(tmp_path, [ifeval_row])
    assert rows[0]["extra_info"]["shape"] == "ifeval" and len(spec_of(rows[0]).rules) == 1  # auto
    _, rows, _ = cli_convert(tmp_path, [ifeval_row], "--shape", "generic")
    assert rows[0]["extra_info"]["shape"] == "generic" and spec_of(rows[0]).constraints == []

    both = {
        "query": "写一篇散文。",
        "checklist": ["不少于三段"],
        "prompt": "Write.",
        "instruction_id_list": [],
        "kwargs": [],
    }
    _, rows, _ = cli_convert(tmp_path, [both], "--shape", "writingbench")
    assert rows[0]["extra_info"]["shape"] == "writingbench" and rows[0]["prompt"][-1]["content"] == "写一篇散文。"

    _, rows, rejects = cli_convert(tmp_path, [{"prompt": "Write."}], "--shape", "ifeval")
    assert rows == [] and rejects[1]["reason"] == "bad_constraints"


def test_data_source_flag_fills_rows_without_one(tmp_path):
    records = [{"prompt": "Write about a fox."}, {"prompt": "Write about a kite.", "data_source": "own"}]
    _, rows, _ = cli_convert(tmp_path, records, "--data-source", "given")
    assert [r["data_source"] for r in rows] == ["given", "own"]


def test_default_data_source_is_the_file_stem(tmp_path):
    from datasets import Dataset, DatasetDict

    _, rows, _ = cli_convert(tmp_path, [{"prompt": "Write about a fox."}], name="poems-2026.jsonl")
    assert rows[0]["data_source"] == "poems-2026"
    saved = tmp_path / "saved-set"
    DatasetDict({"train": Dataset.from_list([{"prompt": "Write about a kite."}])}).save_to_disk(str(saved))
    out = tmp_path / "out-saved"
    assert main(["convert", "--input", str(saved), "--output-dir", str(out), "--val-ratio", "0", "--no-progress"]) == 0
    assert [r["data_source"] for r in read_parquet(out / "train.parquet")] == ["saved-set"]  # not "saved-set[train]"


def test_ability_flag_and_its_default(tmp_path):
    _, rows, _ = cli_convert(tmp_path, [{"prompt": "Write about a fox."}])
    assert rows[0]["ability"] == "creative_writing"
    _, rows, _ = cli_convert(tmp_path, [{"prompt": "Write about a fox."}], "--ability", "poetry")
    assert rows[0]["ability"] == "poetry"
