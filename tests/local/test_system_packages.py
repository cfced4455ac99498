"""Debian packages in the task image, on the real Docker engine: installed, cached by content, named when wrong."""
import os
import subprocess

import pytest

import spmd
from spmd.images import apt, build as image

pytestmark = pytest.mark.docker

# jq is small (with libjq1, libonig5) and absent from the base image.
PACKAGES = ["jq"]


def run_jq(text):
    out = subprocess.run(["jq", "-c", ".a"], input=text, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_a_task_uses_the_installed_tool_and_a_second_ensure_builds_nothing(local, engine):
    knot = spmd.Knot(run_jq, system_packages=PACKAGES, config=local)
    assert knot.map(['{"a": [1, 2]}']).results(timeout=600) == ["[1,2]"]
    again = spmd.Knot(run_jq, system_packages=list(PACKAGES), config=local)
    first, second = knot.ensure_image(), again.ensure_image()
    assert second.built is False and second.reference == first.reference
    layers = engine.images.list(name=apt.SYSTEM_REPOSITORY)
    assert sum(1 for i in layers for t in i.tags if t.startswith(apt.SYSTEM_REPOSITORY)) >= 1


def test_the_tag_changes_with_the_package_list_not_its_order(local):
    plain = spmd.Knot(len, config=local).image_spec()
    one = spmd.Knot(len, system_packages=["jq"], config=local).image_spec()
    two = spmd.Knot(len, system_packages=["jq", "file"], config=local).image_spec()
    swapped = spmd.Knot(len, system_packages=["file", "jq"], config=local).image_spec()
    tags = {image.content_tag(s, "base") for s in (plain, one, two)}
    assert len(tags) == 3
    assert image.content_tag(two, "base") == image.content_tag(swapped, "base")


def test_unknown_package_is_named_before_anything_is_submitted(local, store_dir):
    knot = spmd.Knot(len, system_packages=["jq", "no-such-package-spmd-test"], config=local)
    with pytest.raises(spmd.SystemPackageError) as info:
        knot.map([1])
    assert info.value.package == "no-such-package-spmd-test"
    assert "apt-cache search" in str(info.value)
    assert not os.path.exists(os.path.join(store_dir, "spmd", "jobs"))
