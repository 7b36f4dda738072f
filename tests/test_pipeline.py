"""``python -m recipe.rlmr.pipeline``: the fast parts (prompts, presets, stage book) and, ``slow`` + ``cpu_e2e``,
the quick preset end to end, checking the stages' contracts (docs/pipeline.md)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from recipe.rlmr.pipeline.cli import StateBook
from recipe.rlmr.pipeline.presets import PRESETS
from recipe.rlmr.pipeline.prompts import SUBJECTS, build_prompt_sets, ifeval_rows
from rewards.constraints import validate_kwargs

ROOT = Path(__file__).resolve().parents[1]


def test_heldout_prompts_share_no_subject_with_training_and_carry_checkable_constraints():
    train, heldout = build_prompt_sets(200, 60, 50, seed=3)
    subjects_in = lambda rows: {s for s in SUBJECTS for r in rows if f" about {s}." in r["prompt"]}  # noqa: E731
    assert subjects_in(train) and subjects_in(heldout) and not subjects_in(train) & subjects_in(heldout)
    assert len({r["prompt"] for r in train + heldout}) == 260
    for row in ifeval_rows(train + heldout, "k"):
        assert (
            row["instruction_id_list"][0] == "length_constraints:number_words" and len(row["instruction_id_list"]) >= 2
        )
        for instruction, kwargs in zip(row["instruction_id_list"], row["kwargs"], strict=True):
            validate_kwargs(instruction, kwargs)
    assert build_prompt_sets(20, 5, 50, seed=3) == build_prompt_sets(20, 5, 50, seed=3)


def test_preset_overrides_take_each_fields_type_and_refuse_unknown_fields():
    preset = PRESETS["quick"].with_overrides(["steps=5", "lr=0.5", "arms=rlmr,gdpo"])
    assert (preset.steps, preset.lr, preset.arms) == (5, 0.5, ("rlmr", "gdpo"))
    with pytest.raises(ValueError, match="steps"):
        PRESETS["quick"].with_overrides(["stepz=5"])


def test_state_book_forgets_a_stage_and_every_later_one(tmp_path):
    book = StateBook(tmp_path)
    for stage, unit in (("prompts", None), ("rm", None), ("arms", "rlmr"), ("evaluate", "base")):
        book.put(stage, unit, {"ok": 1})
    book.forget_from("arms")
    assert book.get("prompts") and book.get("rm")
    assert book.get("arms", "rlmr") is None and book.get("evaluate", "base") is None


@pytest.mark.slow
@pytest.mark.cpu_e2e
def test_quick_preset_end_to_end_and_resumed(tmp_path):
    work = tmp_path / "pipeline"
    command = [sys.executable, "-m", "recipe.rlmr.pipeline", "--workdir", str(work), "--quick"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    preset = PRESETS["quick"]
    state = lambda name: json.loads((work / "state" / f"{name}.json").read_text())  # noqa: E731

    # the learned RM agrees with the referee above chance on held-out pairs (the gate is on: presets.py)
    assert preset.rm_min_accuracy > 0.5 and state("rm")["heldout_pairs"] > 50
    assert state("rm")["heldout_accuracy"] >= preset.rm_min_accuracy
    assert state("rm")["heldout_accuracy_noiseless"] > 0.5
    # every arm: a float32 merged folder equal to its checkpoint, which loads and generates
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for arm in preset.arms:
        assert state(f"merge.{arm}")["max_abs_diff_to_checkpoint"] == 0.0
        folder = work / "merged" / arm
        assert json.loads((folder / "config.json").read_text())["dtype"] == "float32"
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        assert model.generate(**ids, max_new_tokens=4, do_sample=False).shape[1] > ids["input_ids"].shape[1]
    # every model has every evaluation figure
    with open(work / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["base", *preset.arms]
    for row in rows:
        for key in (
            "heldout_strict",
            "ifeval_strict",
            "ifbench_strict",
            "ifbench_loose",
            "referee_score",
            "win_rate_vs_base",
            "mean_words",
        ):
            assert row[key] not in ("", None), (row["model"], key)
    # the over-optimisation series: every arm, every step, both scores; RM accuracy on the last step's pairs
    with open(work / "overopt.csv") as handle:
        series = list(csv.DictReader(handle))
    assert sorted((s["arm"], int(s["step"])) for s in series) == sorted(
        (arm, step) for arm in preset.arms for step in range(1, preset.steps + 1)
    )
    assert all(rows[i + 1]["rm_accuracy_last_step"] != "" for i in range(len(preset.arms)))
    assert (work / "summary.md").read_text().count("|") > 20 and (work / "pipeline.png").exists()

    # a second run finds every stage done and redoes only the report
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    running = [line for line in again.stdout.splitlines() if line.endswith(": running")]
    assert running == ["[pipeline] 8/8 report: running"], running


def test_a_workdir_refuses_another_preset_naming_the_changed_field(tmp_path):
    from recipe.rlmr.pipeline.cli import check_preset

    check_preset(tmp_path, PRESETS["quick"])
    check_preset(tmp_path, PRESETS["quick"])  # the same preset: fine
    with pytest.raises(SystemExit, match="steps"):
        check_preset(tmp_path, PRESETS["quick"].with_overrides(["steps=9"]))


def test_a_trained_rm_folder_is_served_and_read_at_the_length_it_was_trained_with(tmp_path, monkeypatch):
    """The launcher's seam (issue 30): train_rm's --max-length, serve_rm's --max-length and the client's
    writing_rm.max_input_tokens are one number, read from the folder's rm_training.json."""
    from recipe.rlmr.dev import launch
    from recipe.rlmr.dev.servers import base

    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "config.json").write_text("{}")
    (rm / "rm_training.json").write_text(json.dumps({"max_input_tokens": 384}))
    assert launch.is_rm_folder(rm) and not launch.is_rm_folder("length")
    assets = launch.TinyAssets(tmp_path / "policy", tmp_path / "tiny_rm", tmp_path / "data")
    overrides = launch.cpu_overrides(assets, "http://127.0.0.1:1", tmp_path, reward_model=str(rm))
    assert f"reward.rlmr.writing_rm.tokenizer={rm}" in overrides
    assert "reward.rlmr.writing_rm.max_input_tokens=384" in overrides
    seen = {}

    class Announced:
        def __init__(self, command, *args):
            seen["command"] = command

        def __enter__(self):
            return 1234

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(base, "announced_server", Announced)
    with launch.serve_reward_model(rm) as url:
        assert url.endswith(":1234")
    command = seen["command"]
    assert command[command.index("--max-length") + 1] == "384"
    with pytest.raises(ValueError, match="model folder"):
        launch.cpu_overrides(assets, "http://x", tmp_path, reward_model=str(tmp_path / "nothing"))


def test_pairs_are_every_distinct_answer_pair_and_noise_only_flips_labels():
    import dataclasses
    import random

    from recipe.rlmr.pipeline.stages import label_pairs, referee_ordered

    preset = PRESETS["quick"]
    prompt = "Write a poem about a paper kite. Answer in fewer than 16 words. Do not use any commas."
    answers = ["The paper kite climbs.", "Kite kite kite kite", "A paper kite rides the wind above the hill.", ""]
    responses = [{"prompt": prompt, "response": a} for a in answers + answers[:1]]  # a duplicate and an empty one
    clean = label_pairs(responses, dataclasses.replace(preset, label_temperature=0.0), random.Random(0))
    assert len(clean) == 3  # 3 distinct non-empty answers: 3 pairs
    assert all(p["referee_chosen"] >= p["referee_rejected"] for p in clean)
    many = [{**r, "prompt": f"{r['prompt']} ({i})"} for i in range(40) for r in responses]
    noisy = label_pairs(many, dataclasses.replace(preset, label_temperature=1.0), random.Random(0))
    assert len(noisy) == 120
    flipped = [p for p in noisy if p["referee_chosen"] < p["referee_rejected"]]
    assert flipped  # at T = 1 on a 0-1 scale labels are close to coin flips
    assert {(p["chosen"], p["rejected"]) for p in map(referee_ordered, noisy)} == {
        (p["chosen"], p["rejected"]) for p in clean
    }
    assert 0.2 < len(flipped) / len(noisy) < 0.5


def test_jsonl_lines_end_at_newline_only_and_a_bad_line_is_named(tmp_path):
    from recipe.rlmr.pipeline.prompts import read_jsonl, write_jsonl

    rows = [{"response": "byte soup \x85 with U+2028 \u2028 and U+2029 \u2029 inside"}, {"response": "plain"}]
    write_jsonl(tmp_path / "a.jsonl", rows)
    assert read_jsonl(tmp_path / "a.jsonl") == rows
    (tmp_path / "b.jsonl").write_text('{"ok": 1}\n{"cut": "hal\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"b.jsonl: line 2: not a JSON object"):
        read_jsonl(tmp_path / "b.jsonl")


def test_pairs_the_referee_ties_are_not_labelled():
    import dataclasses
    import random

    from recipe.rlmr.pipeline.stages import label_pairs

    prompt = "Write a poem about a paper kite. Answer in fewer than 16 words."
    same_score = ["Red kite flies.", "Blue kite sails."]  # same length, no prompt word used twice, both complete
    responses = [{"prompt": prompt, "response": a} for a in [*same_score, "The paper kite climbs above the hill."]]
    preset = dataclasses.replace(PRESETS["quick"], label_temperature=0.0, pair_min_gap=0.0)
    pairs = label_pairs(responses, preset, random.Random(0))
    assert len(pairs) == 2 and all(p["referee_chosen"] > p["referee_rejected"] for p in pairs)
    wide = label_pairs(responses, dataclasses.replace(preset, pair_min_gap=1.0), random.Random(0))
    assert wide == []


def test_the_rm_stage_trains_afresh_when_it_runs_again(tmp_path, monkeypatch):
    """A rerun (``--from rm``, or a run killed mid-training) must not meet the earlier run's checkpoints:
    train_rm refuses such a folder, and an earlier preset's model must not pass for this one's."""
    from recipe.rlmr.pipeline import stages

    stale = tmp_path / "rm" / "model" / "checkpoints" / "checkpoint-20"
    stale.mkdir(parents=True)
    seen = []
    monkeypatch.setattr(stages, "rm_base", lambda work, preset: tmp_path / "base")
    monkeypatch.setattr(stages, "run_command", lambda command, log, what: seen.append(stale.parent.parent.exists()))
    monkeypatch.setattr(stages, "read_jsonl", lambda path: [])
    report = {"accuracy": 0.9, "pairs": 40, "score_std": 1.0, "suggested_gamma": 1.0}
    monkeypatch.setattr(stages, "eval_rm", lambda *args: report)
    stages.run_rm(tmp_path, PRESETS["quick"])
    assert seen == [False]


def test_merge_runs_verls_merger_in_process_and_puts_the_float32_weights_back(tmp_path):
    """A one-rank FSDP checkpoint of the tiny policy (plain tensors, as verl's merger accepts): verl's merger
    alone rounds the weights to bfloat16; ``merge_fp32`` ends bit-equal to the checkpoint, saved as float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recipe.rlmr.dev.tiny_assets import build_policy_model
    from recipe.rlmr.pipeline.merge import merge_fp32, verl_merge

    source = build_policy_model(tmp_path / "policy")
    actor = tmp_path / "global_step_2" / "actor"
    (actor / "huggingface").mkdir(parents=True)
    model = AutoModelForCausalLM.from_pretrained(str(source))
    model.config.save_pretrained(actor / "huggingface")
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(actor / "huggingface")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(state, actor / "model_world_size_1_rank_0.pt")
    (actor / "fsdp_config.json").write_text(json.dumps({"FSDP_version": 2, "world_size": 1}))

    verl_merge(
        ["merge", "--backend", "fsdp", "--local_dir", str(actor), "--target_dir", str(tmp_path / "bf16")],
        tmp_path / "a.log",
    )
    rounded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "bf16"), dtype=torch.float32).state_dict()
    assert any(not torch.equal(rounded[k], v) for k, v in state.items() if k in rounded)

    assert merge_fp32(actor, tmp_path / "merged", tmp_path / "b.log") == 0.0
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["dtype"] == "float32"
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged")).state_dict()
    assert all(torch.equal(merged[k], v) for k, v in state.items() if k in merged)
    with pytest.raises(RuntimeError, match="verl.model_merger merge .* failed"):
        verl_merge(
            ["merge", "--backend", "fsdp", "--local_dir", str(tmp_path), "--target_dir", str(tmp_path / "x")],
            tmp_path / "c.log",
        )


def test_a_stage_that_generates_again_answers_afresh(tmp_path, monkeypatch):
    """``evaluation generate`` resumes into an existing file; the pipeline's stages must not, or a retrained
    model (``--from arms``) would be scored on the earlier model's answers."""
    import evaluation.cli
    from recipe.rlmr.pipeline import stages

    output = tmp_path / "heldout.responses.jsonl"
    output.write_text('{"key": 1, "prompt": "p", "response": "the earlier model"}\n')
    existed = []
    monkeypatch.setattr(evaluation.cli, "main", lambda argv: existed.append(output.exists()) or 0)
    stages.generate("http://127.0.0.1:9", tmp_path / "prompts.jsonl", output, PRESETS["quick"])
    assert existed == [False]
