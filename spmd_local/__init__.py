"""spmd's local backend: tasks run as Docker containers on this machine.

registry = the Docker daemon's image store; store = a directory (apache-libcloud's local
driver) bind-mounted into the containers; queue = a detached scheduler process per job
that starts containers within the CPU and memory capacity.
"""
