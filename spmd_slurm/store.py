"""The one place this backend takes its directory store from.

The directory store lives in ``spmd_local`` for now; when it moves into the core (say
``spmd.dirstore.DirectoryStore``), this import is the only line to change.
"""
from spmd_local.store import LocalStore as DirectoryStore

__all__ = ["DirectoryStore"]
