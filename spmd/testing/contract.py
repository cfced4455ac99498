"""The whole contract of a backend: every part's mixin in one class."""
from .map import MapContract
from .queue import BatchQueueContract
from .registry import ImageRegistryContract
from .store import ObjectStoreContract


class BackendContract(MapContract, BatchQueueContract, ImageRegistryContract, ObjectStoreContract):
    """The whole contract of a backend: store, registry, queue and map."""
