"""``python -m rewards.train_rm``: see ``rewards.rm_training.train``."""

import sys

from rewards.rm_training.train import main

if __name__ == "__main__":
    sys.exit(main())
