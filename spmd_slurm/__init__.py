"""spmd's Slurm backend: the same ``map`` on an HPC cluster, as an ``spmd`` entry-point plugin.

    store    = a directory on the cluster's shared filesystem (``shared_dir``), file:// URLs
    queue    = ``sbatch --array`` (split past MaxArraySize); one ``squeue`` per poll; ``scancel``
    runtime  = a Python environment under ``shared_dir/envs/<content hash>`` (no container),
               or a Docker container per task when ``runtime = "docker"``
    data     = files under ``shared_paths`` passed as they are; URLs staged by the client (the
               login node) into ``shared_dir`` once per version; ``outputs_to`` written by tasks

How it works and what a production cluster differs in: docs/slurm.md.
"""
