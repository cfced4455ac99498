"""``python -m spmd.cli``: the same as the ``spmd`` command."""
import sys

from . import main

sys.exit(main())
