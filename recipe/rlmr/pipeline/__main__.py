import sys

from recipe.rlmr.pipeline.cli import main

sys.exit(main())
