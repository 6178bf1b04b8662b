"""``python -m pocketlm``: the command line (see pocketlm.cli)."""

import sys

from .cli import main

sys.exit(main())
