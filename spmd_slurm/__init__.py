"""spmd's Slurm backend: the same ``map`` on an HPC cluster, as an ``spmd`` entry-point plugin.

    store    = a directory on the cluster's shared filesystem (``shared_dir``), file:// URLs
    queue    = ``sbatch --array`` (split past MaxArraySize); one ``squeue`` per poll; ``scancel``
    runtime  = a Python environment under ``shared_dir/envs/<content hash>`` (no container),
               or a Docker container per task when ``runtime = "docker"``

How it works and what a production cluster differs in: docs/slurm.md.
"""
