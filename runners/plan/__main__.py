"""``python -m runners.plan`` (``tox -e plan``): see ``runners.plan.cli``."""

import sys

from runners.plan.cli import main

sys.exit(main())
