"""`python -m r1kit.cli`: the `r1kit` command."""

import sys

from r1kit.cli.main import main

sys.exit(main())
