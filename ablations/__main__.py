"""``python -m ablations``: see ablations.cli."""

import sys

from ablations.cli import main

sys.exit(main())
