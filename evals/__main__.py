"""`python -m evals`: the evals CLI (`evals.cli`; also installed as `inferbase-evals`)."""

import sys

from evals.cli import main

if __name__ == "__main__":
    sys.exit(main())
