"""``python -m bertforge`` (and ``torchrun -m bertforge``) runs the CLI."""

import sys

from bertforge.cli.main import main

sys.exit(main())
