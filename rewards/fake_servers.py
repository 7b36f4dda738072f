"""Moved to recipe.rlmr.dev.servers.reward,
the one home of the dev and test servers. The old spelling fails, naming the new.
"""

import sys

MESSAGE = (
    "rewards.fake_servers moved to "
    "recipe.rlmr.dev.servers.reward (python -m recipe.rlmr.dev.servers.reward judge|rm ...; "
    "FakeRM is now LengthBiasedRM)"
)

if __name__ == "__main__":
    sys.exit(MESSAGE)
raise ImportError(MESSAGE)
