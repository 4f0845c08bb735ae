"""`python -m axpo_cli ...`: the same as the `axpo` command."""

import sys

from axpo_cli.cli import main

sys.exit(main())
