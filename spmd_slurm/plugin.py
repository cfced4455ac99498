"""The module named by the ``slurm`` entry point of the ``spmd`` group: registers one backend."""
from spmd.hookspecs import hookimpl


@hookimpl
def spmd_register_backends(register):
    register("slurm", "spmd_slurm.backend:SlurmBackend",
             install_hint="pip install 'spmd[slurm]', on a machine with Slurm's commands "
                          "(sbatch, squeue, scancel)")
