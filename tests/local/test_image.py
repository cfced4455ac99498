"""Task images on the real Docker engine: content tags, caching, requirements, base images."""
import io
import os

import pytest

import spmd
from spmd.images import base as baseimage, build as image

pytestmark = pytest.mark.docker


def numpy_version(_):
    import numpy
    return numpy.__version__, int(numpy.arange(10).sum())


def test_requirement_is_importable_in_the_task(local, engine):
    job = spmd.Knot(numpy_version, requirements=["numpy"], config=local).map([0])
    version, total = job.results(timeout=600)[0]
    assert total == 45 and version.count(".") == 2


def test_second_knot_with_same_requirements_builds_nothing(local, engine):
    first = spmd.Knot(len, requirements=["numpy"], config=local).ensure_image()
    created = engine.images.get(first.reference).attrs["Created"]
    second = spmd.Knot(numpy_version, requirements=["numpy"], config=local).ensure_image()
    assert second.built is False
    assert second.reference == first.reference
    assert engine.images.get(second.reference).attrs["Created"] == created


def test_the_tag_changes_with_requirements_not_with_the_function(local):
    a = spmd.Knot(len, config=local).image_spec()
    b = spmd.Knot(numpy_version, config=local).image_spec()
    c = spmd.Knot(len, requirements=["numpy"], config=local).image_spec()
    assert image.content_tag(a, "base") == image.content_tag(b, "base")
    assert image.content_tag(a, "base") != image.content_tag(c, "base")
    assert image.content_tag(a, "base") != image.content_tag(a, "other-base")


def test_unresolvable_requirement_is_named_before_any_container(local, store_dir, engine):
    knot = spmd.Knot(len, requirements=["numpy", "no-such-package-spmd-test==9.9"], config=local)
    with pytest.raises(spmd.RequirementError) as info:
        knot.map([1])
    assert info.value.requirement.startswith("no-such-package-spmd-test")
    assert "no-such-package-spmd-test" in str(info.value)
    assert not os.path.exists(os.path.join(store_dir, "spmd", "jobs"))


def test_base_image_with_another_python_is_refused(local, store_dir, engine):
    # A base image whose python3 reports 3.9: the check runs it, as it would a real one.
    dockerfile = (f"FROM {baseimage.resolve(None)}\n"
                  "RUN printf '#!/bin/sh\\necho 3.9\\n' > /usr/local/bin/python3 "
                  "&& chmod +x /usr/local/bin/python3\n")
    engine.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag="spmd-test/py39:latest",
                        network_mode="none", rm=True)
    knot = spmd.Knot(len, base_image="spmd-test/py39:latest", config=local)
    with pytest.raises(spmd.BaseImageError) as info:
        knot.map([1])
    assert "Python 3.9" in str(info.value) and baseimage.CLIENT_PYTHON in str(info.value)
    assert info.value.image == "spmd-test/py39:latest"
    assert not os.path.exists(os.path.join(store_dir, "spmd", "jobs"))


def test_missing_base_image_says_what_to_do(local, engine):
    knot = spmd.Knot(len, base_image="spmd-test/absent:never", config=local)
    with pytest.raises(spmd.BaseImageError, match="spmd image bootstrap"):
        knot.map([1])


def compiled_spmd(_):
    import os
    import spmd.task.worker
    return [os.path.exists(module.__spec__.cached) for module in (spmd, spmd.task.worker)]


def test_the_image_carries_spmd_compiled_so_no_container_compiles_it(local, engine):
    job = spmd.Knot(compiled_spmd, config=local).map([0])
    assert job.results(timeout=600) == [[True, True]]
