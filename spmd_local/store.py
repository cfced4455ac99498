"""The local store: the core's directory store, registered for ``file://`` URLs.

The directory is bind-mounted at the same path into every task container, so the client,
the scheduler and the tasks share one URL (``file:///abs/path``).
"""
from spmd.scheduling.store import DirectoryStore


class LocalStore(DirectoryStore):
    """A directory holding objects as files under ``<root>/spmd/``."""
