"""`python -m tlapp …` is the same as the `tlapp` command."""

import sys

from .cli import main

sys.exit(main())
