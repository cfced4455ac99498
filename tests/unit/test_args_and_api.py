import pytest

import spmd
from spmd.client.args import Args, as_call


def test_as_call_forms():
    assert as_call(3, starmap=False) == ((3,), {})
    assert as_call((1, 2), starmap=False) == (((1, 2),), {})
    assert as_call((1, 2), starmap=True) == ((1, 2), {})
    assert as_call(Args(1, b=2), starmap=False) == ((1,), {"b": 2})


def test_starmap_needs_tuples():
    with pytest.raises(TypeError, match="starmap=True"):
        as_call(5, starmap=True)


def test_all_is_sorted_and_complete():
    assert spmd.__all__ == sorted(spmd.__all__)
    public = {name for name in dir(spmd) if not name.startswith("_") and name[0].isupper()}
    assert public - set(spmd.__all__) == set()
    assert all(hasattr(spmd, name) for name in spmd.__all__)


def test_future_is_a_concurrent_future():
    import concurrent.futures
    assert issubclass(spmd.Future, concurrent.futures.Future)


@pytest.mark.parametrize("kwargs, words", [
    ({"memory": "2 gigs"}, ["memory", "'2 gigs'"]),
    ({"vcpus": 0}, ["vcpus=0"]),
    ({"timeout": -1}, ["timeout=-1"]),
    ({"retries": -1}, ["retries=-1"]),
    ({"requirements": [""]}, ["requirements"]),
    ({"env": {"A": 1}}, ["env"]),
    ({"memory": ["1GiB", "512MiB"]}, ["memory[1] = '512MiB'", "smallest first"]),
    ({"memory": ["1GiB", "1GiB"]}, ["memory[1]", "larger"]),
    ({"memory": ["1GiB", "lots"]}, ["memory[1]='lots'"]),
    ({"memory": []}, ["memory=[]", "ascending"]),
])
def test_bad_knot_arguments_fail_in_the_constructor(kwargs, words):
    with pytest.raises(ValueError) as info:
        spmd.Knot(len, **kwargs)
    assert all(word in str(info.value) for word in words)


def test_knot_needs_a_callable():
    with pytest.raises(TypeError, match="callable"):
        spmd.Knot("not a function")


def test_memory_sizes_are_bytes_in_resources():
    knot = spmd.Knot(len, memory=["256MiB", "1GiB", 2**31])
    assert knot.resources.memory == 2**28 and knot.resources.more_memory == (2**30, 2**31)
    assert knot.resources.memory_sizes == (2**28, 2**30, 2**31)
