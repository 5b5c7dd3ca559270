"""`python -m oa_dagster.cli`: the `oa-dagster` command without its console script."""

import sys

from oa_dagster.cli import main

sys.exit(main())
