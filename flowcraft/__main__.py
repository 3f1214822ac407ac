"""`python -m flowcraft` is the `flowcraft` command."""

import sys

from flowcraft.cli import main

sys.exit(main())
