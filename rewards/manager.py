"""The `rlmr` reward manager for verl's reward loop (``reward.reward_manager.name=rlmr``).

Per trajectory, concurrently: the writing score from the served writing reward model, and the
constraint verdict (deterministic checks first, then the generative judge for free-text
constraints, all-or-nothing). Returns ``reward_score`` = writing score and a
``reward_extra_info`` with the same keys for every sample: ``rewards.reward_info.RewardInfo``
(the one declaration of those keys; table in ``docs/reward_info.md``).

Failure semantics: nothing here raises or hangs. A backend that still fails after its retries,
or a sample over ``sample_timeout_s``, gives ``reward_valid = 0``; its ``reward_score`` is then a
placeholder (the writing score if known, else 0.0) that the RLMR estimator never learns from: it
zeroes the advantages of any group holding an invalid sample, and the group filter drops it.

Configuration lives under ``reward.rlmr`` (``rewards.config.RewardConfig``; every key in ``docs/config.md``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
import time
from typing import Any

from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from rewards.config import RewardConfig, writing_rm_problems
from rewards.constraints import check_instructions, check_instructions_loose
from rewards.http import HTTPCallError
from rewards.judge import ConstraintJudge
from rewards.reward_info import RewardInfo
from rewards.spec import ConstraintSpec
from rewards.writing_rm import WritingRMClient

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4096)
def _parse_spec(ground_truth: str) -> ConstraintSpec:
    """Specs are parsed once per prompt, not once per sample (the n samples of a group share one)."""
    return ConstraintSpec.parse(ground_truth)


def _words(text: str) -> int:
    return len(re.findall(r"\w+", text))


def _build_writing_rm(settings: RewardConfig, config: Any, router: str | None, rm_tokenizer) -> WritingRMClient:
    rm = settings.writing_rm
    problems = writing_rm_problems(settings, verl_serves=router is not None)
    if problems:
        raise ValueError("\n".join(problems))
    if rm.url:
        from transformers import AutoTokenizer

        return WritingRMClient(rm, AutoTokenizer.from_pretrained(rm.tokenizer, trust_remote_code=True))
    if router is not None:
        # verl serves the reward model (reward.reward_model.enable=True) behind its router.
        from verl.utils.fs import copy_to_local

        managed = config.reward.reward_model
        resolved = rm.model_copy(
            update={
                "url": f"http://{router}",
                "model": rm.model or copy_to_local(managed.model_path),
                "backend": rm.backend or ("sglang" if managed.rollout.name == "sglang" else "vllm_classify"),
            }
        )
        return WritingRMClient(resolved, rm_tokenizer)
    raise ValueError(
        "no writing reward model: set reward.rlmr.writing_rm.url (+ model, tokenizer) for an external server, "
        "or reward.reward_model.enable=True for one served by verl"
    )


def _build_judge(settings: RewardConfig) -> ConstraintJudge | None:
    return ConstraintJudge(settings.judge) if settings.judge.url else None


@register("rlmr")
class RLMRRewardManager(RewardManagerBase):
    """Writing score + all-or-nothing constraint verdict per trajectory."""

    def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None, reward_model_tokenizer=None):
        super().__init__(config, tokenizer, compute_score)
        self.settings = RewardConfig.from_verl(config)
        self.writing_rm = _build_writing_rm(self.settings, config, reward_router_address, reward_model_tokenizer)
        self.judge = _build_judge(self.settings)

    async def run_single(self, data) -> dict:
        start = time.perf_counter()
        item = data[-1]  # several outputs per session: the reward is the last one's
        response_ids = item.batch["responses"]
        valid_length = int(item.batch["attention_mask"][-response_ids.shape[-1] :].sum())
        response = self.tokenizer.decode(response_ids[:valid_length], skip_special_tokens=True)
        info = RewardInfo(response_words=_words(response))
        try:
            await asyncio.wait_for(self._score(item, response, info), timeout=self.settings.sample_timeout_s)
        except asyncio.TimeoutError:
            info.reward_valid = 0
            info.reward_error = (
                f"sample not scored within reward.rlmr.sample_timeout_s={self.settings.sample_timeout_s}"
            )
        except Exception as err:  # never let one sample take the group down without a verdict
            logger.exception("rlmr reward failed")
            info.reward_valid = 0
            info.reward_error = f"{type(err).__name__}: {err}"
        info.reward_latency_s = time.perf_counter() - start
        score = info.writing_score
        return {"reward_score": 0.0 if math.isnan(score) else float(score), "reward_extra_info": info.to_dict()}

    async def _score(self, item, response: str, info: RewardInfo) -> None:
        messages = [dict(m) for m in item.non_tensor_batch["raw_prompt"]]
        # The spec first: a row without one is invalid whatever the RM says, so the RM is not asked.
        try:
            ground_truth = item.non_tensor_batch["reward_model"]["ground_truth"]
            spec = _parse_spec(ground_truth) if isinstance(ground_truth, str) else ConstraintSpec.parse(ground_truth)
        except (KeyError, ValueError) as err:
            raise ValueError(f"row has no usable constraint spec in reward_model.ground_truth: {err}") from err
        writing = asyncio.ensure_future(self._timed(self.writing_rm.score(messages, response)))
        try:
            await self._verify(messages, response, spec, writing, info)
        finally:  # left early (an exception, the sample timeout): never leave the RM call running unobserved
            if not writing.done():
                writing.cancel()

    async def _verify(self, messages, response: str, spec: ConstraintSpec, writing: asyncio.Future, info) -> None:
        """The verdict (rules, then the judge), then the writing score from the already started RM call."""
        if not self.settings.overlap_backends:  # RM first, then the verdict (for measurement)
            await asyncio.wait([writing])
        info.num_constraints = len(spec.constraints)
        task = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")

        failed: list[str] = []
        rules = spec.rules
        ids, kwargs = [r.instruction_id for r in rules], [r.kwargs for r in rules]
        info.rule_ids = ";".join(ids)
        rule_results = check_instructions(response, ids, kwargs, prompt=task)
        failed += [r.instruction_id for r, ok in zip(rules, rule_results, strict=True) if not ok]
        info.rule_ok = int(all(rule_results))
        # IFEval's four figures need the loose verdicts too; loose accepts all that strict does, blank answers aside.
        if info.rule_ok and response.strip():
            loose = rule_results
        else:
            loose = check_instructions_loose(response, ids, kwargs, prompt=task)
        info.num_rules, info.rule_ok_loose = len(rules), int(all(loose))
        info.rules_followed_strict, info.rules_followed_loose = sum(rule_results), sum(loose)

        judged = [c.text for c in spec.judged]
        errors: list[str] = []
        if not judged:
            info.judge_ok = 1
        elif self.settings.short_circuit and not info.rule_ok:
            info.judge_calls_saved = self.settings.judge.votes  # all-or-nothing: already failed
        elif self.judge is None:
            errors.append("free-text constraints need reward.rlmr.judge.url")
        else:
            try:
                verdict, info.judge_latency_s = await self._timed(self.judge.verify(task, judged, response))
                info.judge_calls = verdict.calls
                info.judge_ok = int(verdict.ok)
                failed += [f"judge:{i}" for i, ok in enumerate(verdict.satisfied, start=1) if not ok]
            except HTTPCallError as err:
                errors.append(f"judge: {err}")

        try:
            info.writing_score, info.writing_rm_latency_s = await writing
        except HTTPCallError as err:
            errors.append(f"writing_rm: {err}")

        info.failed_constraints = ";".join(failed)
        # The verdict is known to be "violated" as soon as anything failed; "ok" needs every part answered.
        verdict_known = bool(failed) or info.judge_ok in (0, 1)
        info.constraints_ok = int(not failed and info.judge_ok == 1)
        info.reward_valid = int(not errors and verdict_known)
        info.reward_error = "; ".join(errors)

    async def close(self) -> None:
        """Close the pooled HTTP sessions (verl keeps managers for the whole run; tests and tools call this)."""
        await self.writing_rm.close()
        if self.judge is not None:
            await self.judge.close()

    @staticmethod
    async def _timed(coroutine):
        start = time.perf_counter()
        result = await coroutine
        return result, time.perf_counter() - start


def unused_compute_score(**kwargs):
    """Only for ``reward.custom_reward_function.name`` when verl serves the writing RM.

    verl reaches a reward manager alongside its managed reward model only when a custom reward
    function is configured; the `rlmr` manager never calls it.
    """
    raise RuntimeError("rewards.manager.unused_compute_score is a placeholder; set reward.reward_manager.name=rlmr")
