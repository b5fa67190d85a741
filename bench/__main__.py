"""``python -m bench``: run :mod:`bench.drain`."""

import sys

from bench.drain import main

sys.exit(main())
