"""Tiny assets built on the spot (no hub): tokenizer, policy and reward models, sample data."""

import pyarrow.parquet as pq
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from data_prep.cli import main as data_prep
from recipe.rlmr.dev.sample_data import ON_TOPIC, SEED_PROMPTS, build, build_word_limit
from recipe.rlmr.dev.tiny_assets import build_policy_model
from rewards.spec import ConstraintSpec


def test_policy_model_generates_from_a_chat_prompt(tmp_path):
    path = build_policy_model(tmp_path / "policy")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a poem."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    torch.manual_seed(0)
    output = model.generate(**prompt, max_new_tokens=8)
    assert output.shape[1] > prompt["input_ids"].shape[1]
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    text = "春眠不觉晓, and the sea."
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text  # byte-level: lossless


def test_sample_data_is_valid_verl_data_with_checkable_constraints(tmp_path):
    out = build(tmp_path / "data")
    rows = pq.read_table(out / "train.parquet").to_pylist() + pq.read_table(out / "val.parquet").to_pylist()
    assert len(rows) == len(SEED_PROMPTS)
    assert all(len(ConstraintSpec.parse(r["reward_model"]["ground_truth"]).rules) == 2 for r in rows)
    build_policy_model(tmp_path / "policy")
    assert data_prep(["validate", str(out / "train.parquet"), "--tokenizer", str(tmp_path / "policy")]) == 0


def test_judge_constraint_is_added_to_every_prompt_of_both_sets(tmp_path):
    """``judge_constraint=`` adds the one free-text constraint to every row, and leaves the rules as they
    were without it (the same prompts, the same split)."""
    for name, builder in (("sample", build), ("word_limit", build_word_limit)):
        plain = builder(tmp_path / f"{name}_plain")
        judged = builder(tmp_path / f"{name}_judged", judge_constraint=ON_TOPIC)
        for split in ("train.parquet", "val.parquet"):
            before, after = pq.read_table(plain / split).to_pylist(), pq.read_table(judged / split).to_pylist()
            assert [r["prompt"] for r in before] == [r["prompt"] for r in after] and after, (name, split)
            for old, new in zip(before, after, strict=True):
                old_spec = ConstraintSpec.parse(old["reward_model"]["ground_truth"])
                new_spec = ConstraintSpec.parse(new["reward_model"]["ground_truth"])
                assert new_spec.rules == old_spec.rules and not old_spec.judged
                assert [c.text for c in new_spec.judged] == [ON_TOPIC]


def test_word_answers_are_words_of_every_length_with_commas_and_periods_sometimes():
    import random

    from evaluation.referee import words_of
    from recipe.rlmr.dev.tiny_assets import ANSWER_WORDS, word_answer

    rng = random.Random(0)
    answers = [word_answer(rng, ANSWER_WORDS) for _ in range(2000)]
    assert {len(words_of(a)) for a in answers} == set(range(2, 31))
    assert all(set(words_of(a)) <= set(ANSWER_WORDS) for a in answers)
    with_comma = sum("," in a for a in answers) / len(answers)
    with_period = sum(a.endswith(".") for a in answers) / len(answers)
    assert 0.25 < with_comma < 0.35 and 0.55 < with_period < 0.65


def test_word_policy_is_deterministic_avoids_the_prompts_words_and_needs_prompts(tmp_path, monkeypatch):
    import pytest

    from recipe.rlmr.dev import tiny_assets

    prompts = ["Write a song about the sea and the moon.", "Write a poem about a blue door."]
    seen: list[str] = []
    real = tiny_assets.word_answer
    monkeypatch.setattr(tiny_assets, "word_answer", lambda rng, words: seen.extend(words) or real(rng, words))
    first = tiny_assets.build_word_policy(tmp_path / "a", prompts, seed=3, steps=2, batch_size=2)
    second = tiny_assets.build_word_policy(tmp_path / "b", prompts, seed=3, steps=2, batch_size=2)
    assert seen and not {"sea", "moon", "the", "blue", "door", "a"} & set(seen)
    one, two = (AutoModelForCausalLM.from_pretrained(str(p)).state_dict() for p in (first, second))
    assert all(torch.equal(one[k], two[k]) for k in one)
    untrained = AutoModelForCausalLM.from_pretrained(str(build_policy_model(tmp_path / "c", seed=3))).state_dict()
    assert any(not torch.equal(one[k], untrained[k]) for k in one)  # the steps changed the weights
    with pytest.raises(ValueError, match="at least one prompt"):
        tiny_assets.build_word_policy(tmp_path / "d", [], seed=3)
