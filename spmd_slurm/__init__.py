"""spmd's Slurm backend: the same ``map`` on an HPC cluster, as an ``spmd`` entry-point plugin.

    store    = a directory on the cluster's shared filesystem (``shared_dir``), file:// URLs
    queue    = ``sbatch --array`` (split past MaxArraySize); one ``squeue`` per poll for every
               job of the client, less often while nothing changes (poller.py); ``scancel``
    runtime  = a Python environment under ``shared_dir/envs/<content hash>`` (no container),
               or the task image: ``runtime = "charliecloud"`` (converted into
               ``shared_dir/images/``, ch-run in the job's cgroup) or ``"docker"`` (runtimes.py)
    data     = files under ``shared_paths`` passed as they are; URLs staged by the client (the
               login node) into ``shared_dir`` once per version; ``outputs_to`` written by tasks

How it works and what a production cluster differs in: docs/slurm.md.
"""
