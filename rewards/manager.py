"""The `rlmr` reward manager for verl's reward loop (``reward.reward_manager.name=rlmr``).

Per trajectory, concurrently: the writing score from the served writing reward model, and the
constraint verdict (deterministic checks first, then the generative judge for free-text
constraints, all-or-nothing). Returns ``reward_score`` = writing score and a
``reward_extra_info`` with the same keys for every sample:

    writing_score       float, NaN when the reward model failed
    constraints_ok      1 if every constraint holds, else 0 (what the RLMR estimator reads)
    rule_ok             1/0, the deterministic checks
    judge_ok            1 satisfied or no judge constraints, 0 violated, -1 not asked or failed
    num_constraints     int
    failed_constraints  ";"-joined ids of failed constraints ("judge:N" for the N-th free-text one)
    reward_valid        1, or 0 when a backend failed for good or the sample timed out
    response_words      int
    judge_calls, judge_calls_saved, writing_rm_latency_s, judge_latency_s, reward_latency_s
    reward_error        "" or what went wrong

Failure semantics: nothing here raises or hangs. A backend that still fails after its retries,
or a sample over ``sample_timeout_s``, gives ``reward_valid = 0``; its ``reward_score`` is then a
placeholder (the writing score if known, else 0.0) that the RLMR estimator never learns from: it
zeroes the advantages of any group holding an invalid sample, and the group filter drops it.

Configuration lives under ``reward.rlmr`` (see ``RLMRRewardConfig``; every key in README).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import re
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rewards.constraints import check_instructions
from rewards.http import HttpSettings, RewardCallError
from rewards.judge import ConstraintJudge, JudgeSettings
from rewards.spec import ConstraintSpec
from rewards.writing_rm import WritingRMClient, WritingRMSettings
from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

logger = logging.getLogger(__name__)

EXTRA_INFO_KEYS = (
    "writing_score",
    "constraints_ok",
    "rule_ok",
    "judge_ok",
    "num_constraints",
    "failed_constraints",
    "reward_valid",
    "response_words",
    "judge_calls",
    "judge_calls_saved",
    "writing_rm_latency_s",
    "judge_latency_s",
    "reward_latency_s",
    "reward_error",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _BackendConfig(_Strict):
    """What both HTTP backends take: where they are and how hard to try."""

    url: str | None = None
    model: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    max_concurrency: int = Field(32, ge=1)
    max_retries: int = Field(3, ge=0)
    backoff_s: float = Field(0.5, ge=0)

    def http(self) -> HttpSettings:
        return HttpSettings(self.timeout_s, self.max_concurrency, self.max_retries, self.backoff_s)


class WritingRMConfig(_BackendConfig):
    backend: Literal["vllm_classify", "vllm_pooling", "sglang"] | None = None
    tokenizer: str | None = None
    max_input_tokens: int = Field(16384, ge=16)
    micro_batch_size: int = Field(16, ge=1)
    micro_batch_wait_ms: float = Field(2.0, ge=0)


class JudgeConfig(_BackendConfig):
    api_key_env: str | None = None
    timeout_s: float = Field(120.0, gt=0)  # a 72B judge writes its verdict: slower than a score
    max_concurrency: int = Field(64, ge=1)
    votes: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(1024, ge=16)


class RLMRRewardConfig(_Strict):
    writing_rm: WritingRMConfig = WritingRMConfig()
    judge: JudgeConfig = JudgeConfig()
    short_circuit: bool = True
    sample_timeout_s: float = Field(600.0, gt=0)
    overlap_backends: bool = True

    @classmethod
    def from_verl(cls, config: Any) -> "RLMRRewardConfig":
        from omegaconf import OmegaConf

        section = config.reward.get("rlmr", None) if config is not None else None
        raw = OmegaConf.to_container(section, resolve=True) if section is not None else {}
        try:
            return cls.model_validate(raw or {})
        except ValidationError as err:
            raise ValueError(f"invalid reward.rlmr config: {err}") from err


@functools.lru_cache(maxsize=4096)
def _parse_spec(ground_truth: str) -> ConstraintSpec:
    """Specs are parsed once per prompt, not once per sample (the n samples of a group share one)."""
    return ConstraintSpec.parse(ground_truth)


def _words(text: str) -> int:
    return len(re.findall(r"\w+", text))


def _build_writing_rm(settings: RLMRRewardConfig, config: Any, router: str | None, rm_tokenizer) -> WritingRMClient:
    rm = settings.writing_rm
    managed = config.reward.reward_model if config is not None else None
    if rm.url:
        base_url, model, backend = rm.url, rm.model, rm.backend or "vllm_classify"
        if rm.tokenizer is None:
            raise ValueError("reward.rlmr.writing_rm.tokenizer must name the reward model's tokenizer (its chat template)")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(rm.tokenizer, trust_remote_code=True)
        if model is None:
            raise ValueError("reward.rlmr.writing_rm.model must name the served reward model")
    elif router is not None:
        # verl serves the reward model (reward.reward_model.enable=True) behind its router.
        from verl.utils.fs import copy_to_local

        base_url, tokenizer = f"http://{router}", rm_tokenizer
        model = rm.model or copy_to_local(managed.model_path)
        backend = rm.backend or ("sglang" if managed.rollout.name == "sglang" else "vllm_classify")
    else:
        raise ValueError(
            "no writing reward model: set reward.rlmr.writing_rm.url (+ model, tokenizer) for an external server, "
            "or reward.reward_model.enable=True for one served by verl"
        )
    return WritingRMClient(
        WritingRMSettings(base_url, model, backend, rm.http(), rm.max_input_tokens, rm.micro_batch_size, rm.micro_batch_wait_ms),
        tokenizer,
    )


def _build_judge(settings: RLMRRewardConfig) -> ConstraintJudge | None:
    judge = settings.judge
    if not judge.url:
        return None
    if not judge.model:
        raise ValueError("reward.rlmr.judge.model must name the judge model served at reward.rlmr.judge.url")
    api_key = os.environ.get(judge.api_key_env) if judge.api_key_env else None
    return ConstraintJudge(
        JudgeSettings(judge.url, judge.model, judge.http(), judge.votes, judge.temperature, judge.max_tokens, api_key)
    )


@register("rlmr")
class RLMRRewardManager(RewardManagerBase):
    """Writing score + all-or-nothing constraint verdict per trajectory."""

    def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None, reward_model_tokenizer=None):
        super().__init__(config, tokenizer, compute_score)
        self.settings = RLMRRewardConfig.from_verl(config)
        self.writing_rm = _build_writing_rm(self.settings, config, reward_router_address, reward_model_tokenizer)
        self.judge = _build_judge(self.settings)

    async def run_single(self, data) -> dict:
        start = time.perf_counter()
        item = data[-1]  # several outputs per session: the reward is the last one's
        response_ids = item.batch["responses"]
        valid_length = int(item.batch["attention_mask"][-response_ids.shape[-1] :].sum())
        response = self.tokenizer.decode(response_ids[:valid_length], skip_special_tokens=True)
        info: dict[str, Any] = dict.fromkeys(EXTRA_INFO_KEYS, 0)
        info.update(writing_score=math.nan, judge_ok=-1, failed_constraints="", reward_error="", response_words=_words(response))
        try:
            await asyncio.wait_for(self._score(item, response, info), timeout=self.settings.sample_timeout_s)
        except asyncio.TimeoutError:
            info["reward_valid"] = 0
            info["reward_error"] = f"sample not scored within reward.rlmr.sample_timeout_s={self.settings.sample_timeout_s}"
        except Exception as err:  # never let one sample take the group down without a verdict
            logger.exception("rlmr reward failed")
            info["reward_valid"] = 0
            info["reward_error"] = f"{type(err).__name__}: {err}"
        info["reward_latency_s"] = time.perf_counter() - start
        score = info["writing_score"]
        return {"reward_score": 0.0 if math.isnan(score) else float(score), "reward_extra_info": info}

    async def _score(self, item, response: str, info: dict[str, Any]) -> None:
        messages = [dict(m) for m in item.non_tensor_batch["raw_prompt"]]
        writing = asyncio.ensure_future(self._timed(self.writing_rm.score(messages, response)))
        if not self.settings.overlap_backends:  # RM first, then the verdict (for measurement)
            await asyncio.wait([writing])
        try:
            ground_truth = item.non_tensor_batch["reward_model"]["ground_truth"]
            spec = _parse_spec(ground_truth) if isinstance(ground_truth, str) else ConstraintSpec.parse(ground_truth)
        except (KeyError, ValueError) as err:
            writing.cancel()
            raise ValueError(f"row has no usable constraint spec in reward_model.ground_truth: {err}") from err
        info["num_constraints"] = len(spec.constraints)
        task = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")

        failed: list[str] = []
        rules = spec.rules
        rule_results = check_instructions(response, [r.instruction_id for r in rules], [r.kwargs for r in rules], prompt=task)
        failed += [r.instruction_id for r, ok in zip(rules, rule_results) if not ok]
        info["rule_ok"] = int(all(rule_results))

        judged = [c.text for c in spec.judged]
        errors: list[str] = []
        if not judged:
            info["judge_ok"] = 1
        elif self.settings.short_circuit and not info["rule_ok"]:
            info["judge_calls_saved"] = self.judge.settings.votes if self.judge else 1  # all-or-nothing: already failed
        elif self.judge is None:
            errors.append("free-text constraints need reward.rlmr.judge.url")
        else:
            try:
                verdict, info["judge_latency_s"] = await self._timed(self.judge.verify(task, judged, response))
                info["judge_calls"] = verdict.calls
                info["judge_ok"] = int(verdict.ok)
                failed += [f"judge:{i}" for i, ok in enumerate(verdict.satisfied, start=1) if not ok]
            except RewardCallError as err:
                errors.append(f"judge: {err}")

        try:
            info["writing_score"], info["writing_rm_latency_s"] = await writing
        except RewardCallError as err:
            errors.append(f"writing_rm: {err}")

        info["failed_constraints"] = ";".join(failed)
        # The verdict is known to be "violated" as soon as anything failed; "ok" needs every part answered.
        verdict_known = bool(failed) or info["judge_ok"] in (0, 1)
        info["constraints_ok"] = int(not failed and info["judge_ok"] == 1)
        info["reward_valid"] = int(not errors and verdict_known)
        info["reward_error"] = "; ".join(errors)

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
