"""`python -m service.cli` is `ledger`."""

import sys

from service.cli import main

sys.exit(main())
