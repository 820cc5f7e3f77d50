"""``python -m runners.micro`` (``tox -e micro``)."""

import sys

from runners.micro.cli import main

sys.exit(main())
