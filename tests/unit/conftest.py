"""Fixtures of the unit tests: a Knot on the in-memory backend (spmd.testing.memory)."""
import pytest

import spmd
from spmd.testing import memory


@pytest.fixture
def knot(request):
    """``knot(func, **options)``: a Knot on a memory backend of this test's own."""
    memory.register()
    name = f"t-{request.node.name}"
    yield lambda func, **options: spmd.Knot(func, backend="memory",
                                            config={"memory_store": name}, **options)
    memory.forget(name)
