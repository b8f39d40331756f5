"""``python -m swapout.cli ...``, as torchrun needs it."""

import sys

from .main import main

sys.exit(main())
