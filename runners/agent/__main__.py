import sys

from runners.agent.server import main

sys.exit(main())
