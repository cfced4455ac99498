"""The local scheduler: ``python -m spmd_local.scheduler ROOT JOB`` runs spmd's scheduler core
(``spmd.scheduling``) with the warm-container runner (``spmd_local.runner``)."""
from __future__ import annotations

import sys

from spmd.scheduling import scheduler_main

from .runner import LocalRunner

if __name__ == "__main__":
    sys.exit(scheduler_main(sys.argv[1:], LocalRunner, "local"))
