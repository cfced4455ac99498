import pytest

import spmd
from spmd.args import Args, as_call


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
])
def test_bad_knot_arguments_fail_in_the_constructor(kwargs, words):
    with pytest.raises(ValueError) as info:
        spmd.Knot(len, **kwargs)
    assert all(word in str(info.value) for word in words)


def test_knot_needs_a_callable():
    with pytest.raises(TypeError, match="callable"):
        spmd.Knot("not a function")
