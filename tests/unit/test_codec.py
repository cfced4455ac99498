import threading

import pytest

from spmd import codec
from spmd.codec import RemoteTraceback
from spmd.errors import RemoteError, SerializationError


class Custom(Exception):
    pass


def raise_and_capture(exc):
    try:
        raise exc
    except Exception as caught:
        return codec.capture_exception(caught)


def test_exception_round_trip_keeps_type_message_and_traceback():
    record = raise_and_capture(Custom("boom 7"))
    rebuilt = codec.rebuild_exception(codec.loads(codec.dumps(record)))
    assert type(rebuilt) is Custom
    assert str(rebuilt) == "boom 7"
    assert isinstance(rebuilt.__cause__, RemoteTraceback)
    assert "raise exc" in str(rebuilt.__cause__) and "Custom: boom 7" in str(rebuilt.__cause__)


def test_unpicklable_exception_becomes_remote_error():
    class Holder(Exception):
        def __init__(self):
            super().__init__("holds a lock")
            self.lock = threading.Lock()

    rebuilt = codec.rebuild_exception(raise_and_capture(Holder()))
    assert isinstance(rebuilt, RemoteError)
    assert "Holder" in str(rebuilt) and "holds a lock" in str(rebuilt)


def test_unpicklable_global_is_named():
    lock = threading.Lock()

    def uses_lock(x):
        with lock:
            return x

    with pytest.raises(SerializationError) as info:
        codec.dumps_function(uses_lock)
    assert "'lock'" in str(info.value) and "uses_lock" in str(info.value)
    assert info.value.what == "lock"


def test_unpicklable_item_is_named_by_index():
    calls = [((1,), {}), ((threading.Lock(),), {}), ((3,), {})]
    with pytest.raises(SerializationError) as info:
        codec.dumps_calls(calls, items=[10, 18, 26])  # a task's items, dealt (layout.dealt)
    assert "input item 18" in str(info.value)


def test_user_modules_are_found_and_installed_ones_are_not():
    import json
    import numpy  # installed in the venv's site-packages
    names = {m.__name__ for m in codec.local_modules()}
    assert "json" not in names and "numpy" not in names and "spmd" not in names
    assert __name__.split(".")[0] in names or any(n.startswith("test_") for n in names)
    del json, numpy
