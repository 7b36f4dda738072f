"""Seeded sampling that does not depend on batching: each row draws from its own generator.

Shared by the ``hf`` rollout (``rollout/hf.py``) and the local chat server
(``recipe.rlmr.dev.servers.chat``). torch and transformers only: no verl, no Ray.

Invariant: a row's k-th token depends only on its own seed and its first k draws, so the same
request gives the same tokens alone, in any batch, in any order.
"""

from __future__ import annotations

import hashlib

import torch


def sample_seed(*identity) -> int:
    """A 63-bit seed from ``identity`` (ints, floats, None, tuples and lists of them), the same in
    every process and run (no ``hash()``: Python salts it per process)."""
    digest = hashlib.blake2b(repr(identity).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class SeededSampler:
    """The last logits processor of a sampled ``generate``: warps each row's scores as transformers
    would (temperature, top-k, top-p), draws the row's token from the row's own generator (inverse
    CDF of one uniform per row per step) and returns scores that allow only that token.

    transformers (5.x) runs custom processors before its own sampling warpers, so this one warps
    itself; the warpers that follow, and ``generate``'s multinomial, keep the one token it left.
    Repetition penalty and the other default processors run before it. Raw logits (``output_logits``,
    whence the returned log-probs) are untouched. Each row draws once per generation step while its
    batch runs, so its k-th token depends only on its first k draws: on its own seed, whatever rows
    share its batch."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, top_k: int):
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        warpers = []
        if temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(temperature))
        if top_k:
            warpers.append(TopKLogitsWarper(top_k=top_k))
        if top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=top_p))
        self.warpers = LogitsProcessorList(warpers)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.warpers(input_ids, scores).float(), dim=-1)
        cdf = probs.cumsum(dim=-1)
        uniform = torch.stack([torch.rand((), generator=g) for g in self.generators]).to(cdf.device)
        target = (uniform.clamp(max=1 - 1e-6) * cdf[:, -1]).unsqueeze(-1)  # in [0, total)
        # the first token whose cumulative mass exceeds the target: never one of zero mass
        tokens = torch.searchsorted(cdf, target, right=True).clamp(max=cdf.shape[-1] - 1)
        forced = torch.full_like(scores, -float("inf"))
        return forced.scatter_(-1, tokens, 0.0)
