"""``python -m runners.bench`` (``tox -e bench``)."""

import sys

from runners.bench.main import main

sys.exit(main())
