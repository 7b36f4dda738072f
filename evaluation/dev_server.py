"""Moved to recipe.rlmr.dev.servers.chat,
the one home of the dev and test servers. The old spelling fails, naming the new.
"""

import sys

MESSAGE = (
    "evaluation.dev_server moved to "
    "recipe.rlmr.dev.servers.chat (python -m recipe.rlmr.dev.servers.chat hf MODEL_DIR ...)"
)

if __name__ == "__main__":
    sys.exit(MESSAGE)
raise ImportError(MESSAGE)
