"""What runs in the user's process: ``Knot`` and ``map`` (``knot``), the ``Job`` and its
futures, the ``Executor``, chained maps and the failure budget, progress, the staging of
inputs, command jobs, and ``spmd doctor``."""
