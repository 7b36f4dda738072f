"""Writing-RM training and evaluation (`rewards.train_rm`, `rewards.eval_rm`) on CPU with tiny models
built at test time: learning a preference, bad rows, resume, serving the trained folder, and the
train/serve agreement on the RM's input text."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from recipe.rlmr.dev.servers.base import serve_in_subprocess
from recipe.rlmr.dev.tiny_assets import build_policy_model, build_reward_model
from rewards.config import WritingRMConfig
from rewards.rm_format import format_rm_input, tokenize_rm_input
from rewards.rm_training import eval_cli, train
from rewards.rm_training.evaluate import pair_report
from rewards.rm_training.pairs import PairsError, parse_pair, prepare_pairs
from rewards.rm_training.synthetic import make_pairs, write_jsonl
from rewards.writing_rm import WritingRMClient

REPO = Path(__file__).resolve().parents[1]
FAST = ["--no-progress", "--no-gradient-checkpointing", "--max-length", "256"]


def run_train(base, out, train_path, *extra):
    argv = ["--model", str(base), "--train", str(train_path), "--output", str(out), *FAST, *extra]
    assert train.main(argv) == 0
    return json.loads((Path(out) / "rm_training.json").read_text())


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-rm")
    base = build_reward_model(root / "base", seed=0)
    write_jsonl(root / "train.jsonl", make_pairs(160, seed=0))
    write_jsonl(root / "val.jsonl", make_pairs(48, seed=1))
    return root, base


@pytest.fixture(scope="module")
def trained(work):
    """One short training with a held-out set: 160 synthetic pairs, 1 epoch (20 steps), fixed seed."""
    root, base = work
    out = root / "rm"
    info = run_train(
        base,
        out,
        root / "train.jsonl",
        "--val",
        str(root / "val.jsonl"),
        *("--epochs", "1", "--lr", "2e-3", "--batch-size", "8", "--seed", "0", "--logging-steps", "5"),
    )
    return out, info


def test_training_learns_a_preference_that_holds_out(work, trained):
    root, base = work
    out, info = trained
    report = info["report"]
    assert report["pairs"] == 48
    assert report["accuracy"] >= 0.95, report
    assert report["chosen"]["mean"] > report["rejected"]["mean"]
    # the untrained base scores the same held-out pairs at about chance: the training did it
    before = eval_report(base, root / "val.jsonl", root / "before.json")
    assert before["accuracy"] < 0.8 and abs(before["margin"]["mean"]) < 0.5 * report["margin"]["mean"]
    # a servable folder: one output, the pad token the trainer used, the chat template
    config = json.loads((out / "config.json").read_text())
    assert len(config["id2label"]) == 1 and config["architectures"] == ["Qwen2ForSequenceClassification"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert config["pad_token_id"] == tokenizer.pad_token_id and tokenizer.chat_template
    assert not (out / "prepared").exists()


def test_training_logs_scores_of_both_sides_to_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = trained
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for name in ("loss", "accuracy", "chosen_score_mean", "chosen_score_std", "rejected_score_mean"):
        assert f"train/{name}" in tags and f"eval/{name}" in tags, sorted(tags)
    accuracy = [e.value for e in events.Scalars("train/accuracy")]
    assert accuracy[-1] > accuracy[0]


def eval_report(model_dir, pairs, output):
    argv = ["--model", str(model_dir), "--pairs", str(pairs), "--output", str(output), "--no-progress"]
    assert eval_cli.main(argv) == 0
    return json.loads(Path(output).read_text())


def test_eval_rm_prints_the_numbers_training_ended_with(work, trained, capsys):
    root, _ = work
    out, info = trained
    report = eval_report(out, root / "val.jsonl", root / "report.json")
    printed = capsys.readouterr().out
    for key in ("accuracy", "score_std", "suggested_gamma"):
        assert report[key] == pytest.approx(info["report"][key], rel=1e-4, abs=1e-5)
    for side in ("chosen", "rejected"):
        for stat in ("mean", "std", "p5", "p50", "p95"):
            assert report[side][stat] == pytest.approx(info["report"][side][stat], rel=1e-4, abs=1e-5)
    assert report["max_input_tokens"] == 256  # read back from rm_training.json
    assert "pairwise accuracy" in printed and "suggested algorithm.rlmr.gamma" in printed


def test_trained_folder_served_by_serve_rm_scores_as_a_direct_forward(trained):
    out, info = trained
    max_tokens = info["max_input_tokens"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    messages = [{"role": "system", "content": "You are a poet."}, {"role": "user", "content": "A line on the sea."}]
    responses = ["Moon light on the river.", "Broken map of the city.", "sea " * 400 + "lantern."]  # last is cut
    with serve_in_subprocess(out, served_model_name="writing-rm") as port:
        settings = WritingRMConfig(
            url=f"http://127.0.0.1:{port}", model="writing-rm", tokenizer=str(out), max_input_tokens=max_tokens
        )
        rm = WritingRMClient(settings, tokenizer)

        async def score_all():
            try:
                return await asyncio.gather(*(rm.score(messages, r) for r in responses))
            finally:
                await rm.close()

        served = asyncio.run(score_all())
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    direct = []
    for response in responses:
        text, _ = format_rm_input(tokenizer, messages, response, max_tokens)
        ids = torch.tensor([tokenize_rm_input(tokenizer, text)])
        assert ids.shape[1] <= max_tokens
        with torch.no_grad():
            direct.append(model(input_ids=ids).logits[0, -1].item())
    assert served == pytest.approx(direct, abs=1e-4)
    assert rm.truncated == 1  # the long response was cut by the client, to the length trained with
    assert served[0] > served[1]  # the trained preference, through the whole serving path


ROWS = [
    {"prompt": "Write about the sea.", "chosen": "Moon on water.", "rejected": "Noise of a city."},
    {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "春天的诗"}],
        "chosen": [{"role": "assistant", "content": "春眠不觉晓。"}],
        "rejected": {"role": "assistant", "content": "处处闻啼鸟。"},
    },
    {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: A poem?\n\nAssistant: Sea, light.",
        "rejected": ("\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: A poem?\n\nAssistant: No."),
    },
    {"prompt": "Tell a long story.", "chosen": "once " * 300 + "the end", "rejected": "twice " * 300 + "fin"},
]


def test_training_text_is_the_reward_clients_text_byte_for_byte(work, tmp_path):
    _, base = work
    tokenizer = AutoTokenizer.from_pretrained(base)
    max_tokens = 64
    client = WritingRMClient(
        WritingRMConfig(url="http://127.0.0.1:1", model="m", tokenizer=str(base), max_input_tokens=max_tokens),
        tokenizer,
    )
    dataset, summary = prepare_pairs(
        str(write_jsonl(tmp_path / "p.jsonl", ROWS)), tokenizer, max_tokens, tmp_path / "prep", progress=False
    )
    assert summary.kept == len(ROWS) and summary.truncated == 1
    for row, prepared in zip(ROWS, dataset, strict=True):
        pair = parse_pair(row, "margin")
        for side, response in (("chosen", pair.chosen), ("rejected", pair.rejected)):
            served_text = client.format(pair.messages, response)
            assert tokenizer.decode(prepared[f"{side}_input_ids"]).encode() == served_text.encode()
            assert prepared[f"{side}_input_ids"] == tokenize_rm_input(tokenizer, served_text)
            assert len(prepared[f"{side}_input_ids"]) <= max_tokens
    assert client.truncated == 2  # both sides of the long row: the client keeps their last tokens too
    long = dataset[3]["chosen_input_ids"]
    assert tokenizer.decode(long).endswith("the end<|im_end|>\n")
    # the HH-RLHF row: the shared turns are the prompt, the last assistant turn is the response
    hh = parse_pair(ROWS[2], "margin")
    assert [m["role"] for m in hh.messages] == ["user", "assistant", "user"] and hh.chosen == "Sea, light."


def test_bad_rows_go_to_the_rejects_file_with_their_reasons(work, tmp_path):
    _, base = work
    tokenizer = AutoTokenizer.from_pretrained(base)
    good = {"prompt": "p", "chosen": "good answer", "rejected": "bad answer"}
    tail = " same" * 100
    rows = [
        good,  # 1
        {"prompt": "p", "chosen": "x"},  # 2 missing rejected
        {"prompt": "p", "chosen": "  ", "rejected": "y"},  # 3 empty chosen
        {"prompt": "p", "chosen": "same", "rejected": "same"},  # 4 identical
        {**good, "margin": "big"},  # 5 bad margin
        {"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"},  # 6
        {"prompt": "p", "chosen": [{"role": "user", "content": "x"}], "rejected": "y"},  # 7 not assistant last
        {"prompt": "p", "chosen": "A" + tail, "rejected": "B" + tail},  # 8 identical after truncation
        {**good, "margin": 1.5},  # 9
    ]
    path = tmp_path / "pairs.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines.insert(5, "{not json")  # line 6 of the file
    path.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "rejects.jsonl"
    dataset, summary = prepare_pairs(str(path), tokenizer, 32, tmp_path / "prep", rejects_path=rejects, progress=False)
    found = {r["row"]: r["reason"] for r in map(json.loads, rejects.read_text().splitlines())}
    assert found == {
        2: "missing_key",
        3: "empty_response",
        4: "identical",
        5: "bad_margin",
        6: "undecodable",
        7: "prompt_mismatch",
        8: "not_assistant_last",
        9: "identical_after_truncation",
    }
    assert dataset["row"] == [1, 10] and dataset["margin"] == [0.0, 1.5]
    assert summary.kept + summary.total_rejected == summary.read == 10
    first = json.loads(rejects.read_text().splitlines()[0])
    assert first["source_file"] == str(path) and "'rejected'" in first["detail"]
    # --strict: the first bad row stops the run, named by file and row
    with pytest.raises(PairsError, match=r"pairs\.jsonl row 2: missing_key"):
        prepare_pairs(str(path), tokenizer, 32, tmp_path / "prep2", strict=True, progress=False)
    argv = ["--model", str(base), "--train", str(path), "--output", str(tmp_path / "o"), "--strict", *FAST]
    assert train.main(argv) == 2


def weights(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


def test_resume_continues_from_the_checkpoint_not_from_scratch(work, tmp_path):
    root, _ = work
    base = build_reward_model(tmp_path / "base", seed=0)
    args = ("--max-steps", "6", "--save-steps", "3", "--lr", "2e-3", "--batch-size", "4", "--seed", "0")
    whole = run_train(base, tmp_path / "whole", root / "train.jsonl", *args)
    assert whole["train"]["global_step"] == 6

    cut = tmp_path / "cut"
    run_train(base, cut, root / "train.jsonl", *args)
    shutil.rmtree(cut / "checkpoints" / "checkpoint-6")  # as if the job died after the step-3 checkpoint
    (cut / "model.safetensors").unlink()
    # a run that restarted from scratch would now start from other weights; a resumed one never reads them
    build_reward_model(base, seed=7)
    with pytest.raises(FileExistsError):
        train.train(train.build_parser().parse_args(["--model", str(base), "--train", "x", "--output", str(cut)]))
    resumed = run_train(base, cut, root / "train.jsonl", *args, "--resume")
    assert resumed["train"]["global_step"] == 6
    expected, got = weights(tmp_path / "whole"), weights(cut)
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        argv = ["--model", "m", "--train", "x", "--output", str(tmp_path / "n"), "--resume"]
        train.train(train.build_parser().parse_args(argv))


def test_a_causal_lm_base_gets_a_score_head_and_a_pad_token_other_than_eos(work, tmp_path):
    root, _ = work
    base = build_policy_model(tmp_path / "lm")
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.pad_token = tokenizer.eos_token  # as many instruct models ship
    tokenizer.save_pretrained(base)
    out = tmp_path / "rm"
    run_train(base, out, root / "val.jsonl", "--max-steps", "2", "--batch-size", "4")
    config = json.loads((out / "config.json").read_text())
    saved = AutoTokenizer.from_pretrained(out)
    assert config["architectures"] == ["Qwen2ForSequenceClassification"] and len(config["id2label"]) == 1
    assert saved.pad_token == "<|endoftext|>" != saved.eos_token
    assert config["pad_token_id"] == saved.pad_token_id
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.score.weight.shape == (1, 64)


def test_pair_report_accuracy_spread_and_gamma_scale():
    chosen, rejected = np.array([2.0, 1.0, 0.5, 3.0]), np.array([0.0, 1.0, 1.5, -1.0])
    report = pair_report(chosen, rejected)
    assert report["accuracy"] == 0.5 and report["ties"] == 1  # a tie is not a win
    pooled = np.concatenate([chosen, rejected]).std()
    assert report["score_std"] == pytest.approx(pooled)  # 1.1456...
    assert report["suggested_gamma"] == pytest.approx(1.1)  # the pooled std to 2 significant digits
    assert report["chosen"]["p50"] == pytest.approx(1.5) and report["rejected"]["mean"] == pytest.approx(0.375)
    assert "gamma" in report["gamma_note"]


SCRIPTS = sorted((REPO / "rewards" / "scripts").glob("train_rm_*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_launch_scripts_dry_run_print_the_command_and_start_nothing(script, tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable, "TRAIN": "/data/pairs.jsonl"}
    env["OUTPUT"] = str(tmp_path / "out")
    done = subprocess.run(["bash", str(script), "--resume"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    command = next(line for line in done.stdout.splitlines() if line.startswith("command:"))
    processes = int(done.stdout.split("processes: ")[1].split()[0])
    assert "accelerate.commands.launch" in command and "-m rewards.train_rm" in command
    assert f"--num_processes {processes}" in command and command.endswith("--resume")
    kind = {"7b": "FSDP", "14b": "FSDP", "32b": "DEEPSPEED", "72b": "DEEPSPEED"}[script.stem.split("_")[-1]]
    assert f"config parsed: DistributedType.{kind}" in done.stdout
    assert not (tmp_path / "out").exists()
    del env["TRAIN"]
    missing = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert missing.returncode == 2 and "set TRAIN" in missing.stderr
