"""``python -m rewards.eval_rm``: see ``rewards.rm_training.eval_cli``."""

import sys

from rewards.rm_training.eval_cli import main

if __name__ == "__main__":
    sys.exit(main())
