"""Train the writing reward model: pointwise Bradley-Terry on preference pairs with TRL's RewardTrainer.

    python -m rewards.train_rm --model BASE --train PAIRS [--val PAIRS] --output DIR [--epochs 1]
        [--lr 1e-5] [--batch-size 8] [--max-length 4096] [--margin-key margin] [--center-rewards 0.0]
        [--seed 0] [--resume] [--strict]

BASE is any causal LM or sequence-classification folder (or hub id where a hub is reachable) of the
Qwen2/Qwen3/Llama families; it is loaded as a sequence-classification model with one output (a new
score head over the last token). Pairs are formatted by ``rewards.rm_format``, the function the RLMR
reward client uses at serving time, and keep their last ``--max-length`` tokens, as the client does.

DIR receives the trained model and tokenizer (a Hugging Face folder that ``rewards.serve_rm`` and
vLLM's classify serving load as is), ``rm_training.json`` (settings, data summary, final report),
``rejects.train.jsonl`` / ``rejects.val.jsonl``, ``tensorboard/`` (loss, accuracy, score mean/std of
chosen and rejected) and ``checkpoints/`` (resumable with ``--resume``).

Multi-GPU: ``accelerate launch --config_file rewards/scripts/accelerate/{fsdp,zero3}.yaml -m
rewards.train_rm ...`` (see ``rewards/scripts/train_rm_*.sh``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

FORMAT_CONTRACT = "rewards.rm_format v1: chat template + assistant turn, leading BOS removed, keep last tokens"
# Tokens tried, in order, as the padding token when the tokenizer has none or pads with its EOS
# (an EOS pad would hide a trailing EOS from the score head's "last non-pad token").
PAD_CANDIDATES = ("<|endoftext|>", "<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "[PAD]")
ADDED_PAD = "<|rm_pad|>"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rewards.train_rm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="base model: causal LM or sequence-classification folder")
    p.add_argument("--train", required=True, help="training pairs (.jsonl, .json, .csv, .parquet)")
    p.add_argument("--val", default=None, help="held-out pairs: evaluated every epoch and reported at the end")
    p.add_argument("--output", required=True, help="output folder (the servable model lands here)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps (-1: epochs)")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--batch-size", type=int, default=8, help="pairs per device per step")
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--max-length", type=int, default=4096, help="tokens per side; longer inputs keep their end")
    p.add_argument("--margin-key", default="margin", help="per-pair margin field ('' to ignore margins)")
    p.add_argument("--center-rewards", type=float, default=0.0, help="reward centering coefficient (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup-ratio", type=float, default=0.03)
    p.add_argument("--lr-scheduler", default="cosine", help="transformers scheduler name")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="auto: bf16 on GPU")
    p.add_argument("--no-gradient-checkpointing", action="store_true", help="faster, more activation memory")
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--save-steps", type=int, default=500, help="checkpoint every N steps (and at the end)")
    p.add_argument("--save-total-limit", type=int, default=2)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUTPUT/checkpoints")
    p.add_argument("--strict", action="store_true", help="fail on the first bad row instead of rejecting it")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def ensure_pad_token(tokenizer) -> bool:
    """Give ``tokenizer`` a padding token distinct from EOS; True when a new token had to be added."""
    if tokenizer.pad_token is not None and tokenizer.pad_token != tokenizer.eos_token:
        return False
    vocab = tokenizer.get_vocab()
    for candidate in PAD_CANDIDATES:
        if candidate in vocab and candidate != tokenizer.eos_token:
            tokenizer.pad_token = candidate
            return False
    tokenizer.add_special_tokens({"pad_token": ADDED_PAD})
    return True


def load_base_model(path: str, tokenizer, added_pad: bool, dtype: str):
    """``path`` as a one-output sequence-classification model (a new score head for a causal LM)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    try:  # TRL's helper keeps the expected "score.weight newly initialised" warning quiet
        from trl.trainer.reward_trainer import suppress_seqcls_warning
    except ImportError:  # pragma: no cover - older TRL
        import contextlib

        suppress_seqcls_warning = contextlib.nullcontext
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    with suppress_seqcls_warning():
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch_dtype)
    if model.config.num_labels != 1:
        raise ValueError(f"{path}: loaded with {model.config.num_labels} outputs, a reward model needs 1")
    if added_pad:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def _make_trainer_class():
    import torch
    from trl import RewardTrainer

    class PairwiseRewardTrainer(RewardTrainer):
        """TRL's RewardTrainer (its Bradley-Terry loss, margin and centering untouched) that also logs
        the mean and std of chosen and rejected scores."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
            mode = "train" if self.model.training else "eval"
            with torch.no_grad():
                chosen, rejected = torch.chunk(outputs.logits[:, -1].detach().float(), chunks=2)
                chosen = self.accelerator.gather_for_metrics(chosen)
                rejected = self.accelerator.gather_for_metrics(rejected)
                for side, scores in (("chosen", chosen), ("rejected", rejected)):
                    self._metrics[mode][f"{side}_score_mean"].append(scores.mean().item())
                    self._metrics[mode][f"{side}_score_std"].append(scores.std(unbiased=False).item())
            return (loss, outputs) if return_outputs else loss

    return PairwiseRewardTrainer


def _gather_scores(trainer, dataset):
    """Chosen and rejected scores of ``dataset`` over all ranks (FSDP / ZeRO-3 shards need every rank)."""
    import numpy as np
    import torch

    loader = trainer.get_eval_dataloader(dataset)
    model = trainer.model_wrapped if trainer.model_wrapped is not None else trainer.model
    model.eval()
    chosen, rejected = [], []
    with torch.no_grad():
        for batch in loader:
            batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            logits = model(**batch, use_cache=False).logits[:, -1].float()
            c, r = torch.chunk(logits, chunks=2)
            chosen.append(trainer.accelerator.gather_for_metrics(c).cpu())
            rejected.append(trainer.accelerator.gather_for_metrics(r).cpu())
    return np.asarray(torch.cat(chosen)), np.asarray(torch.cat(rejected))


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run one training; returns what ``rm_training.json`` holds."""
    from accelerate import PartialState
    from transformers import AutoTokenizer
    from transformers.trainer_utils import get_last_checkpoint
    from trl import RewardConfig as TRLRewardConfig  # TRL's training arguments, not rewards.config.RewardConfig

    from rewards.rm_training.evaluate import pair_report, render_report
    from rewards.rm_training.pairs import load_prepared, prepare_pairs

    output = Path(args.output)
    checkpoints = output / "checkpoints"
    last_checkpoint = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if args.resume and last_checkpoint is None:
        raise FileNotFoundError(f"--resume: no checkpoint-N folder in {checkpoints}")
    if not args.resume and last_checkpoint is not None:
        held = Path(last_checkpoint).name
        raise FileExistsError(f"{checkpoints} already holds {held}: pass --resume or a new --output")
    output.mkdir(parents=True, exist_ok=True)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(output / "tensorboard")
    dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if _on_gpu() else "float32")
    progress = not args.no_progress
    if not progress:
        import datasets

        datasets.disable_progress_bars()

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{args.model}: the tokenizer has no chat template; the RM input format needs one")
    added_pad = ensure_pad_token(tokenizer)
    config = TRLRewardConfig(
        output_dir=str(checkpoints),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        lr_scheduler_type=args.lr_scheduler,
        warmup_steps=args.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=args.weight_decay,
        seed=args.seed,
        data_seed=args.seed,
        max_length=args.max_length,  # inputs are already cut to it, so TRL's length filter drops nothing
        center_rewards_coefficient=args.center_rewards or None,
        bf16=dtype == "bfloat16",
        gradient_checkpointing=not args.no_gradient_checkpointing,
        logging_steps=args.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        eval_strategy="epoch" if args.val else "no",
        report_to=["tensorboard"],
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        dataloader_pin_memory=_on_gpu(),
        ddp_find_unused_parameters=False,
        use_cpu=not _on_gpu(),  # CPU-only machines: gloo data parallel under torchrun / accelerate launch
    )

    state = PartialState()  # after TRLRewardConfig, which sets up the distributed state (and resets earlier ones)
    prepared = output / "prepared"
    margin_key = args.margin_key or None
    summaries = {}
    with state.main_process_first():  # rank 0 tokenizes and writes rejects; the others load its result
        splits = {"train": args.train, **({"val": args.val} if args.val else {})}
        datasets_ = {}
        for split, path in splits.items():
            if state.is_main_process:
                datasets_[split], summary = prepare_pairs(
                    path,
                    tokenizer,
                    args.max_length,
                    prepared / split,
                    margin_key=margin_key,
                    rejects_path=output / f"rejects.{split}.jsonl",
                    strict=args.strict,
                    progress=progress,
                )
                summaries[split] = summary.as_dict()
                print(summary.render(), flush=True)
            else:
                datasets_[split] = load_prepared(prepared / split)

    model = load_base_model(args.model, tokenizer, added_pad, dtype)
    trainer = _make_trainer_class()(
        model=model,
        args=config,
        train_dataset=datasets_["train"],
        eval_dataset=datasets_.get("val"),
        processing_class=tokenizer,
    )
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last_checkpoint if args.resume else None)
    seconds = time.perf_counter() - started
    trainer.save_model(str(output))  # gathers FSDP / ZeRO-3 shards into one HF folder

    report = None
    if "val" in datasets_:
        chosen, rejected = _gather_scores(trainer, datasets_["val"])
        report = pair_report(chosen, rejected)
    info = {
        "base_model": args.model,
        "format": FORMAT_CONTRACT,
        "max_input_tokens": args.max_length,
        "pad_token": tokenizer.pad_token,
        "added_pad_token": added_pad,
        "trl_version": __import__("trl").__version__,
        "settings": {k: v for k, v in vars(args).items()},
        "data": summaries,
        "train": {
            "global_step": trainer.state.global_step,
            "train_loss": result.training_loss,
            "seconds": seconds,
            "pairs_per_second": result.metrics.get("train_samples_per_second"),
        },
        "report": report,
    }
    if state.is_main_process:
        tokenizer.save_pretrained(str(output))
        (output / "rm_training.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        if report is not None:
            print(render_report(report, title=f"held-out {args.val}"), flush=True)
        else:
            print("no --val pairs: run python -m rewards.eval_rm --model OUTPUT --pairs HELD_OUT for accuracy")
        print(f"saved the reward model to {output}", flush=True)
    state.wait_for_everyone()
    if state.is_main_process:  # the tokenized pairs are rebuilt on --resume; the folder stays lean
        shutil.rmtree(prepared, ignore_errors=True)
    return info


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rewards.readers import InputError
    from rewards.rm_training.pairs import PairsError

    try:
        train(args)
    except (PairsError, InputError, FileNotFoundError, FileExistsError) as err:
        print(f"train_rm: {err}", file=sys.stderr)
        return 2
    return 0
