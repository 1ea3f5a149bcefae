"""`python -m minigen` runs the `minigen` command (see minigen/cli.py)."""

import sys

from .cli import main

sys.exit(main())
