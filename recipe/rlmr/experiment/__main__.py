import sys

from recipe.rlmr.experiment.cli import main

sys.exit(main())
