"""The whole contract of a backend: every part's mixin in one class."""
from .data import DataContract
from .map import MapContract
from .queue import BatchQueueContract
from .registry import ImageRegistryContract
from .store import ObjectStoreContract


class BackendContract(MapContract, DataContract, BatchQueueContract, ImageRegistryContract,
                      ObjectStoreContract):
    """The whole contract of a backend: store, registry, queue, map, data and commands."""
