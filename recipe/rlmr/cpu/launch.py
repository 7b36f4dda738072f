"""Moved to ``recipe.rlmr.dev.launch`` (the local launcher runs on CPU or CUDA, so it is a dev tool, not
part of the CPU backend). The old spelling fails, naming the new one."""

import sys

MESSAGE = (
    "recipe.rlmr.cpu.launch moved to recipe.rlmr.dev.launch: "
    "python -m recipe.rlmr.dev.launch WORKDIR [--device cpu|cuda] ... (same flags)"
)

if __name__ == "__main__":
    sys.exit(MESSAGE)
raise ImportError(MESSAGE)
