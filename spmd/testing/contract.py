"""The whole contract of a backend: every part's mixin in one class."""
from .budget import FailureBudgetContract
from .chain import ChainContract
from .checkpoint import CheckpointContract
from .data import DataContract
from .faults import FaultContract
from .map import MapContract
from .parallel import ParallelCapContract
from .privacy import PrivacyContract
from .queue import BatchQueueContract
from .registry import ImageRegistryContract
from .rerun import RerunContract
from .secrets import SecretsContract
from .store import ObjectStoreContract
from .urls import UrlDataContract


class BackendContract(MapContract, RerunContract, DataContract, UrlDataContract, FaultContract,
                      FailureBudgetContract, ParallelCapContract, ChainContract, SecretsContract,
                      PrivacyContract, CheckpointContract,
                      BatchQueueContract, ImageRegistryContract, ObjectStoreContract):
    """The whole contract of a backend: store, registry, queue, map, reruns, data (on this
    machine and where it lives), commands, faults from outside, the failure budget, the concurrency
    cap and checkpoints that survive a stop."""
