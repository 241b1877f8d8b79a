"""``python -m sed <command> ...``: the same as the ``sedkit`` command."""

import sys

from sed.bin.cli import main

sys.exit(main())
