"""The whole contract of a backend: every part's mixin in one class."""
from .data import DataContract
from .map import MapContract
from .queue import BatchQueueContract
from .registry import ImageRegistryContract
from .rerun import RerunContract
from .store import ObjectStoreContract


class BackendContract(MapContract, RerunContract, DataContract, BatchQueueContract,
                      ImageRegistryContract, ObjectStoreContract):
    """The whole contract of a backend: store, registry, queue, map, reruns, data and commands."""
