"""Tiny models and tokenizer built on the spot, for CPU development and tests (no model hub).

``build_tokenizer(dir)``: a byte-level BPE tokenizer trained on a few sentences, with a ChatML
chat template (``<|im_start|>role ... <|im_end|>``), so any text round-trips.
``build_reward_model(dir)``: that tokenizer plus a randomly initialised
``Qwen2ForSequenceClassification`` (hidden size 64, 2 layers, one output: a writing score).
``build_policy_model(dir)``: that tokenizer plus a randomly initialised ``Qwen2ForCausalLM`` of
the same size, with a generation config that stops at ``<|im_end|>``.
``build_word_policy(dir, prompts)``: that policy fine-tuned for a few hundred steps (about 20 s on
a CPU) to answer the given prompts with strings of English words, so a referee that reads words
(``evaluation.referee``) and a tiny RM learning it have something to see; the random policy writes
byte soup.

    python -m recipe.rlmr.dev.tiny_assets {reward-model,policy-model,tokenizer} OUT_DIR [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_CORPUS = [
    "Write a short poem about the sea in under eighty words.",
    "The lighthouse keeper counted waves until the morning came.",
    "Once upon a time, a fox wrote letters to the moon.",
    "Use the words river, lantern and silence. Give it a title.",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "She folded the map, and the city folded with it.",
]


def build_tokenizer(out_dir: str | Path, vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML_TEMPLATE
    )
    fast.save_pretrained(str(out_dir))
    return fast


def _tiny_config(tokenizer, hidden_size: int, num_layers: int, **extra):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **extra,
    )


def build_reward_model(out_dir: str | Path, seed: int = 0, hidden_size: int = 64, num_layers: int = 2) -> Path:
    import torch
    from transformers import Qwen2ForSequenceClassification

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(out_dir)
    torch.manual_seed(seed)
    Qwen2ForSequenceClassification(_tiny_config(tokenizer, hidden_size, num_layers, num_labels=1)).save_pretrained(
        str(out_dir)
    )
    return out_dir


def build_policy_model(out_dir: str | Path, seed: int = 0, hidden_size: int = 64, num_layers: int = 2) -> Path:
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(out_dir)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(_tiny_config(tokenizer, hidden_size, num_layers, tie_word_embeddings=True))
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=True, temperature=1.0
    )
    model.save_pretrained(str(out_dir))
    return out_dir


# the word policy's answers: common words none of which names a subject, so the referee's relevance term
# stays near 0 and its preference comes from length fit, completeness and repetition, which a 2-layer RM
# learns from a few hundred pairs (docs/pipeline.md: held-out accuracy 0.74-0.90 against the referee's
# order in four runs; matching prompt words to answer words is the part a tiny RM learns worst)
ANSWER_WORDS = tuple(
    """the a of and in was she he it light sea moon rain stone door old small quiet morning waves map blue
    green warm cold slow soft bright dark long far near home road sky field cloud song hand voice heart dream
    shadow evening always never again there here then now""".split()
)


def word_answer(rng, words: tuple[str, ...], max_words: int = 30) -> str:
    """2..max_words words from ``words``; a comma after one of them in 30% of answers, a closing period in 60%."""
    chosen = [rng.choice(words) for _ in range(rng.randint(2, max_words))]
    if rng.random() < 0.3:
        chosen[rng.randrange(len(chosen))] += ","
    return " ".join(chosen) + ("." if rng.random() < 0.6 else "")


def build_word_policy(
    out_dir: str | Path, prompts: list[str], seed: int = 0, steps: int = 300, lr: float = 3e-3, batch_size: int = 16
) -> Path:
    """``build_policy_model``, then ``steps`` AdamW steps of next-token loss on synthetic chats: a prompt drawn
    from ``prompts``, answered by ``word_answer`` over ``ANSWER_WORDS`` less every word the prompts use.

    What comes out writes word strings of every length up to about 30 words, some with a comma, most ending
    with a period: constraint checks and the referee vary between its samples. Deterministic in ``seed``."""
    import random
    import re

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not prompts:
        raise ValueError("build_word_policy needs at least one prompt to answer")
    out_dir = build_policy_model(out_dir, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    prompt_words = {w for prompt in prompts for w in re.findall(r"[a-z']+", prompt.lower())}
    words = tuple(w for w in ANSWER_WORDS if w not in prompt_words) or ANSWER_WORDS
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        chats = []
        for _ in range(batch_size):
            turns = [{"role": "user", "content": rng.choice(prompts)}]
            turns.append({"role": "assistant", "content": word_answer(rng, words)})
            chats.append(tokenizer.apply_chat_template(turns, tokenize=False))
        batch = tokenizer(chats, return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)  # [B, T]
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(str(out_dir))
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["reward-model", "policy-model", "tokenizer"])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    builders = {"reward-model": build_reward_model, "policy-model": build_policy_model}
    if args.kind in builders:
        builders[args.kind](args.out_dir, seed=args.seed)
    else:
        build_tokenizer(args.out_dir)
    print(f"wrote {args.kind} to {args.out_dir}")


if __name__ == "__main__":
    main()
