"""The pipeline's stages after ``prompts``: each reads the files of the stages before it and writes its own.

pairs     base policy answers the training prompts (``evaluation generate`` against the local chat
          server, seeded per sample); every distinct pair of a prompt's answers is labelled by the
          referee with label noise; pairs of a share of the prompts are held out
rm        ``rewards.train_rm`` on the training pairs, ``rewards.eval_rm`` on the held-out ones; the gate
          stops the pipeline when held-out accuracy against the referee is below the preset's floor
arms      one RL run per arm against the learned RM served by ``rewards.serve_rm`` (the experiment's
          runner: same seed, only ``algorithm.rlmr.mode`` differs), rollouts dumped, checkpoint at the end
merge     verl's ``model_merger`` to a Hugging Face folder, weights restored to float32
evaluate  base and every arm on the held-out prompts, an IFEval and an IFBench subset: constraint
          accuracy, referee score, pairwise win rate against the base (the referee judging, both orders)
overopt   per step, the learned RM's and the referee's score of each arm's rollouts; the learned RM's
          accuracy on referee-labelled pairs of the last step's rollouts against the base policy's pairs
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

from evaluation.referee import RefereeBand, noisy_preference, score, words_of
from recipe.rlmr.pipeline.prompts import read_jsonl, write_jsonl

POLICY_NAME = "policy"


def band(preset) -> RefereeBand:
    return RefereeBand(preset.referee_lo, preset.referee_hi)


def run_command(command: list[str], log: Path, what: str) -> None:
    """A stage's subprocess, its output in ``log``; a failure names the command and the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False).returncode
    if code != 0:
        raise failed(what, code, command, log)


def failed(what: str, code: int, command: list[str], log: Path) -> RuntimeError:
    """The error of a failed stage command: what, its exit code, the command and the log's last 30 lines."""
    tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
    return RuntimeError(f"{what} failed (exit {code}): {' '.join(command)}\n--- {log} (tail) ---\n{tail}")


@contextlib.contextmanager
def chat_server(model_dir: Path):
    """The model behind the local chat server (``HFChatServer``, batched), in a thread of this process."""
    from recipe.rlmr.dev.servers.chat import HFChatServer

    with HFChatServer(str(model_dir), served_model_name=POLICY_NAME) as server:
        yield server.url


def generate(url: str, prompts: Path, output: Path, preset, n: int = 1, temperature: float | None = None) -> None:
    """``python -m evaluation generate`` in this process (the user's command), seeded per sample."""
    from evaluation.cli import main as evaluation

    temperature = preset.eval_temperature if temperature is None else temperature
    # generate resumes into an existing file; a stage that runs again (--from, or after a kill) answers afresh,
    # or a retrained model's evaluation would keep the earlier model's answers
    output.unlink(missing_ok=True)
    argv = ["generate", "--base-url", url, "--model", POLICY_NAME, "--prompts", str(prompts), "--output", str(output)]
    argv += ["--n", str(n), "--temperature", str(temperature), "--seed", str(preset.seed)]
    argv += ["--max-tokens", str(preset.response_length), "--no-progress"]
    with contextlib.redirect_stdout(None):  # its summary table: the stage's progress line says enough
        code = evaluation(argv)
    if code != 0:
        raise RuntimeError(f"evaluation generate failed for {prompts} (see the summary beside {output})")


# ---- pairs --------------------------------------------------------------------------------------


def label_pairs(responses: list[dict], preset, rng: random.Random) -> list[dict]:
    """Every distinct pair of a prompt's answers, chosen/rejected drawn from the referee (noisy).

    A pair whose referee scores differ by ``preset.pair_min_gap`` or less is not labelled: the referee
    has no preference (a rater's "about the same"), so any label would be a coin flip taught as a fact,
    and a held-out accuracy over such pairs is 0.5 by construction."""
    by_prompt: dict[str, list[dict]] = {}
    for record in responses:
        by_prompt.setdefault(record["prompt"], []).append(record)
    pairs = []
    for prompt, records in by_prompt.items():
        texts = sorted({r["response"] for r in records if r["response"].strip()})
        for a, b in itertools.combinations(texts, 2):
            sa, sb = score(prompt, a, band(preset)).score, score(prompt, b, band(preset)).score
            if abs(sa - sb) <= preset.pair_min_gap:
                continue
            if noisy_preference(sa, sb, preset.label_temperature, rng):
                chosen, rejected = (a, sa), (b, sb)
            else:
                chosen, rejected = (b, sb), (a, sa)
            pairs.append(
                {
                    "prompt": [{"role": "user", "content": prompt}],
                    "chosen": chosen[0],
                    "rejected": rejected[0],
                    "referee_chosen": chosen[1],
                    "referee_rejected": rejected[1],
                }
            )
    return pairs


def referee_ordered(pair: dict) -> dict:
    """The pair with the referee's preferred answer as ``chosen`` (its noisy label undone)."""
    if pair["referee_chosen"] >= pair["referee_rejected"]:
        return pair
    return {
        **pair,
        "chosen": pair["rejected"],
        "rejected": pair["chosen"],
        "referee_chosen": pair["referee_rejected"],
        "referee_rejected": pair["referee_chosen"],
    }


def run_pairs(work: Path, preset, policy: Path) -> dict:
    out = work / "pairs"
    out.mkdir(parents=True, exist_ok=True)
    with chat_server(policy) as url:
        generate(url, work / "prompts" / "train_eval.jsonl", out / "base_samples.jsonl", preset, n=preset.pair_samples)
    responses = read_jsonl(out / "base_samples.jsonl")
    rng = random.Random(preset.seed)
    prompts = sorted({r["prompt"] for r in responses})
    rng.shuffle(prompts)
    held = set(prompts[: max(1, round(preset.pair_heldout_share * len(prompts)))])
    train_pairs = label_pairs([r for r in responses if r["prompt"] not in held], preset, rng)
    heldout_pairs = label_pairs([r for r in responses if r["prompt"] in held], preset, rng)
    write_jsonl(out / "train.jsonl", train_pairs)
    write_jsonl(out / "heldout.jsonl", heldout_pairs)
    agree = sum(p["referee_chosen"] >= p["referee_rejected"] for p in train_pairs + heldout_pairs)
    return {
        "base_samples": len(responses),
        "train_pairs": len(train_pairs),
        "heldout_pairs": len(heldout_pairs),
        "labels_agreeing_with_referee": agree / max(1, len(train_pairs) + len(heldout_pairs)),
    }


# ---- rm -----------------------------------------------------------------------------------------


def rm_base(work: Path, preset) -> Path:
    """The RM's starting model: tiny_assets' reward model, or SmolLM2 cut to its first L layers."""
    if preset.rm_base == "tiny":
        from recipe.rlmr.dev import tiny_assets

        target = work / "assets" / "rm_base"
        if not (target / "config.json").exists():
            tiny_assets.build_reward_model(target, seed=preset.seed + 1)
        return target
    kind, _, layers = preset.rm_base.partition(":")
    if kind != "smollm2" or not layers.isdigit():
        raise ValueError(f"rm_base must be 'tiny' or 'smollm2:LAYERS', got {preset.rm_base!r}")
    target = work / "assets" / f"rm_base_smollm2_{layers}"
    if not (target / "config.json").exists():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = policy_path(work, preset)
        model = AutoModelForCausalLM.from_pretrained(source)
        model.model.layers = model.model.layers[: int(layers)]
        model.config.num_hidden_layers = int(layers)
        if getattr(model.config, "layer_types", None):
            model.config.layer_types = model.config.layer_types[: int(layers)]
        model.save_pretrained(target)
        AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


def run_rm(work: Path, preset) -> dict:
    out = work / "rm"
    # a rerun (--from rm, or a run killed while training) trains afresh: train_rm refuses a folder that
    # already holds checkpoints, and an earlier preset's model must not be evaluated as this one's
    shutil.rmtree(out / "model", ignore_errors=True)
    base = rm_base(work, preset)
    pairs = work / "pairs"
    command = [sys.executable, "-m", "rewards.train_rm", "--model", str(base), "--train", str(pairs / "train.jsonl")]
    command += ["--output", str(out / "model"), "--epochs", str(preset.rm_epochs), "--lr", str(preset.rm_lr)]
    command += ["--batch-size", str(preset.rm_batch_size), "--max-length", str(preset.rm_max_length)]
    command += ["--seed", str(preset.seed), "--dtype", "float32", "--no-progress", "--logging-steps", "5"]
    run_command(command, out / "train_rm.log", "rewards.train_rm")
    report = eval_rm(out / "model", pairs / "heldout.jsonl", out / "eval_heldout.json", out / "eval_rm.log")
    # the same held-out pairs in the referee's own order: the baseline of the over-optimisation accuracy
    clean = [referee_ordered(pair) for pair in read_jsonl(pairs / "heldout.jsonl")]
    write_jsonl(pairs / "heldout_noiseless.jsonl", clean)
    noiseless = eval_rm(
        out / "model", pairs / "heldout_noiseless.jsonl", out / "eval_noiseless.json", out / "eval_rm2.log"
    )
    summary = {
        "heldout_accuracy": report["accuracy"],
        "heldout_accuracy_noiseless": noiseless["accuracy"],
        "heldout_pairs": report["pairs"],
        "score_std": report["score_std"],
        "suggested_gamma": report["suggested_gamma"],
    }
    if report["accuracy"] < preset.rm_min_accuracy:
        raise GateError(
            f"the learned writing RM agrees with the referee on {report['accuracy']:.3f} of {report['pairs']} held-out "
            f"pairs, below the gate {preset.rm_min_accuracy} (rm_min_accuracy): RL against it would train "
            "toward noise. "
            f"More pairs (train_prompts, pair_samples), more epochs (rm_epochs) or less label noise "
            f"(label_temperature) help; --set rm_min_accuracy=0 runs on regardless. Report: {out / 'eval_heldout.json'}"
        )
    return summary


class GateError(RuntimeError):
    """A stage's quality gate refused to let the pipeline go on."""


def eval_rm(model: Path, pairs: Path, output: Path, log: Path) -> dict:
    """``python -m rewards.eval_rm`` in this process (its own entry point; a subprocess spent ~6 s of each
    call importing torch), its printout in ``log``; a failure names the command and the log's tail."""
    from rewards.rm_training.eval_cli import main as eval_rm_main

    argv = ["--model", str(model), "--pairs", str(pairs), "--output", str(output), "--no-progress"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        code = eval_rm_main(argv)
    if code != 0:
        raise failed("rewards.eval_rm", code, argv, log)
    return json.loads(output.read_text())


# ---- arms ---------------------------------------------------------------------------------------


def policy_path(work: Path, preset) -> Path:
    """The base policy folder (built or converted once under ``WORKDIR/assets``)."""
    if preset.policy in ("tiny", "tiny_words"):
        from recipe.rlmr.dev import tiny_assets

        target = work / "assets" / "policy"
        if not (target / "config.json").exists():
            if preset.policy == "tiny":
                tiny_assets.build_policy_model(target, seed=preset.seed)
            else:  # taught to write words on the training prompts only (held-out ones stay unseen)
                print("[pipeline]   teaching the tiny policy to write words (about 20 s) ...", flush=True)
                prompts = [row["prompt"] for row in read_jsonl(work / "prompts" / "train.jsonl")]
                tiny_assets.build_word_policy(target, prompts, seed=preset.seed)
        return target
    if preset.policy == "smollm2":
        from recipe.rlmr.dev.smollm2 import convert

        return Path(convert(work / "assets" / "smollm2"))
    raise ValueError(f"policy must be 'tiny', 'tiny_words' or 'smollm2', got {preset.policy!r}")


def arm_plan(work: Path, preset):
    from recipe.rlmr.experiment.policies import Policy
    from recipe.rlmr.experiment.runner import Plan

    policy = Policy(
        preset.policy,
        preset.word_limit,
        preset.response_length,
        preset.prompts_per_step,
        preset.samples_per_prompt,
        preset.lr,
        f"the pipeline's {preset.name} policy",
    )
    return Plan(
        workdir=work / "arms",
        policy=policy,
        arms=list(preset.arms),
        seeds=[preset.seed],
        steps=preset.steps,
        policy_path=policy_path(work, preset),
        data=str(work / "prompts" / "data"),
        reward_model=str(work / "rm" / "model"),
        dump_rollouts=True,
        save_freq=preset.steps,  # one checkpoint, at the last step
    )


def run_arm(work: Path, preset, arm: str) -> dict:
    from recipe.rlmr.experiment.runner import run_one

    plan = arm_plan(work, preset)
    result = run_one(plan, arm, preset.seed, lambda step, values: print(f"[pipeline]   {arm} step {step}", flush=True))
    if result.returncode != 0:
        raise RuntimeError(f"arm {arm} failed (exit {result.returncode}); log: {result.workdir / 'trainer.log'}")
    return {"wall_s": round(result.wall_s, 1), "run_dir": str(result.workdir)}


# ---- merge --------------------------------------------------------------------------------------


def run_merge(work: Path, preset, arm: str) -> dict:
    from recipe.rlmr.pipeline.merge import merge_fp32

    run_dir = arm_plan(work, preset).run_dir(arm, preset.seed)
    actor = run_dir / "checkpoints" / f"global_step_{preset.steps}" / "actor"
    target = work / "merged" / arm
    max_abs = merge_fp32(actor, target, work / "merged" / f"{arm}.log")
    return {"merged": str(target), "max_abs_diff_to_checkpoint": max_abs}


# ---- evaluate -----------------------------------------------------------------------------------

EVAL_SETS = ("heldout", "ifeval", "ifbench")


def eval_prompt_files(work: Path, preset) -> dict[str, Path]:
    """The evaluation prompt files: held-out prompts, and the first N of IFEval and IFBench."""
    from evaluation.files import shipped_file

    out = work / "evaluate" / "prompts"
    files = {"heldout": work / "prompts" / "heldout.jsonl"}
    for name, count in (("ifeval", preset.ifeval_prompts), ("ifbench", preset.ifbench_prompts)):
        if count:
            rows = read_jsonl(shipped_file(name))[:count]
            write_jsonl(out / f"{name}.jsonl", rows)
            files[name] = out / f"{name}.jsonl"
    return files


def model_dir(work: Path, preset, name: str) -> Path:
    return policy_path(work, preset) if name == "base" else work / "merged" / name


def run_evaluate(work: Path, preset, name: str) -> dict:
    """Generate for one model (base or an arm) and score everything but the pairwise comparison."""
    from evaluation.cli import main as evaluation

    out = work / "evaluate" / name
    out.mkdir(parents=True, exist_ok=True)
    files = eval_prompt_files(work, preset)
    with chat_server(model_dir(work, preset, name)) as url:
        for set_name, prompts in files.items():
            generate(url, prompts, out / f"{set_name}.responses.jsonl", preset)
    figures: dict[str, float] = {}
    for set_name, command in (("heldout", "ifeval"), ("ifeval", "ifeval"), ("ifbench", "ifbench")):
        if set_name not in files:
            continue
        argv = [command, "--responses", str(out / f"{set_name}.responses.jsonl"), "--prompts", str(files[set_name])]
        with contextlib.redirect_stdout(None):
            code = evaluation([*argv, "--output", str(out / f"{set_name}.{command}.json")])
        if code != 0:
            raise RuntimeError(f"evaluation {command} failed on {out / f'{set_name}.responses.jsonl'}")
        metrics = json.loads((out / f"{set_name}.{command}.json").read_text())["metrics"]
        figures[f"{set_name}_strict"] = metrics["prompt_level_strict_acc"]
        figures[f"{set_name}_loose"] = metrics["prompt_level_loose_acc"]
    heldout = read_jsonl(out / "heldout.responses.jsonl")
    scores = [score(r["prompt"], r["response"], band(preset)).score for r in heldout]
    figures["referee_score"] = sum(scores) / len(scores)
    figures["mean_words"] = sum(len(words_of(r["response"])) for r in heldout) / len(heldout)
    return figures


def run_pairwise(work: Path, preset, name: str) -> dict:
    """``evaluation pairwise`` of an arm against the base on the held-out prompts, the referee judging."""
    from evaluation.cli import main as evaluation
    from recipe.rlmr.dev.servers.referee import REFEREE_MODEL, RefereeServer

    out = work / "evaluate" / name
    with RefereeServer(band(preset)) as referee:
        argv = ["pairwise", "--a", str(out / "heldout.responses.jsonl")]
        argv += ["--b", str(work / "evaluate" / "base" / "heldout.responses.jsonl")]
        argv += ["--judge-url", referee.url, "--judge-model", REFEREE_MODEL, "--no-progress"]
        with contextlib.redirect_stdout(None):
            code = evaluation([*argv, "--output", str(out / "pairwise_vs_base.json")])
    if code != 0:
        raise RuntimeError(f"evaluation pairwise failed for {name}")
    result = json.loads((out / "pairwise_vs_base.json").read_text())
    return {"win_rate_vs_base": result["overall"]["win_rate"]}


# ---- over-optimisation ----------------------------------------------------------------------------


def run_overopt(work: Path, preset, arm: str) -> dict:
    """Per step: the learned RM's mean score (the reward the run saw) and the referee's, of the rollouts;
    then the learned RM's accuracy on referee-labelled pairs of the last step's rollouts."""
    from recipe.rlmr.experiment.sweep import read_rollouts

    run_dir = arm_plan(work, preset).run_dir(arm, preset.seed)
    prompts = [row["prompt"] for row in read_jsonl(work / "prompts" / "train.jsonl")]
    series = []
    last: list[dict] = []
    for step, records in sorted(read_rollouts(run_dir).items()):
        rows = []
        for record in records:
            prompt = next((p for p in prompts if p in record["input"]), None)
            if prompt is None:
                continue  # an expanded prompt: not in the prompt file the referee reads
            rows.append({"prompt": prompt, "response": record["output"], "rm": float(record["score"])})
        if not rows:
            continue
        referee = [score(r["prompt"], r["response"], band(preset)).score for r in rows]
        series.append(
            {
                "arm": arm,
                "step": step,
                "rm_score": sum(r["rm"] for r in rows) / len(rows),
                "referee_score": sum(referee) / len(referee),
                "mean_words": sum(len(words_of(r["response"])) for r in rows) / len(rows),
            }
        )
        last = rows
    out = work / "overopt"
    write_jsonl(out / f"{arm}.series.jsonl", series)
    pairs = label_pairs(last, dataclasses.replace(preset, label_temperature=0.0), random.Random(preset.seed))
    write_jsonl(out / f"{arm}.last_step_pairs.jsonl", pairs)
    accuracy = None
    if pairs:
        report = eval_rm(
            work / "rm" / "model",
            out / f"{arm}.last_step_pairs.jsonl",
            out / f"{arm}.eval.json",
            out / f"{arm}.eval_rm.log",
        )
        accuracy = report["accuracy"]
    return {"steps": len(series), "rm_accuracy_last_step": accuracy, "last_step_pairs": len(pairs)}
