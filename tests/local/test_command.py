"""Command jobs on the local backend with real Docker: a user's image, retries, timeout,
attach, and images spmd cannot add Python to (the kit's DataContract covers the rest)."""
import hashlib
import os
import tempfile
from pathlib import Path

import pytest

import spmd
from spmd import docker_engine
from spmd.testing.data import user_image_with_tool

pytestmark = pytest.mark.docker

BUSYBOX = "/bin/busybox"


def _image(tag: str, files: dict, dockerfile: str) -> str:
    """An image built from a context of files (name -> (bytes, mode)); once per content."""
    digest = hashlib.sha256(dockerfile.encode() + b"".join(
        name.encode() + hashlib.sha256(content).digest() for name, (content, _) in sorted(files.items()))
    ).hexdigest()[:12]
    reference = f"{tag}:{digest}"
    if not docker_engine.image_exists(reference):
        with tempfile.TemporaryDirectory() as context:
            for name, (content, mode) in files.items():
                Path(context, name).write_bytes(content)
                os.chmod(Path(context, name), mode)
            Path(context, "Dockerfile").write_text(dockerfile)
            docker_engine.client().images.build(path=context, tag=reference, rm=True, pull=False,
                                                network_mode="none")
    return reference


def _busybox() -> bytes:
    if not os.path.exists(BUSYBOX):
        pytest.fail("a static busybox is needed to build an image without Python: "
                    "apt-get install busybox-static", pytrace=False)
    return Path(BUSYBOX).read_bytes()


def test_command_over_three_items_in_a_user_image(local, engine, tmp_path):
    image = user_image_with_tool(None)
    sizes = [10, 2000, 300_000]
    items = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"sub-0{i}.nii.gz"
        path.write_bytes(os.urandom(size))
        items.append({"data": spmd.File(path), "label": f"sub-0{i}"})
    cmd = spmd.Command(["count", "{data}", "{label}", "{label}.txt"], image=image,
                       outputs=["{label}.txt"])
    job = spmd.Knot(cmd, config=local).map(items)
    results = job.results(timeout=300)
    assert [r.log for r in results] == [f"counted {n} bytes for sub-0{i}" for i, n in enumerate(sizes)]
    assert [r.argv[0] for r in results] == ["count"] * 3  # the image's ENTRYPOINT is not used
    for i, size in enumerate(sizes):
        job.download(i, tmp_path / "back")
        assert (tmp_path / "back" / f"sub-0{i}.txt").read_text() == f"sub-0{i} {size}\n"
    # the same Command again: the derived image is found by its content tag, not rebuilt
    assert spmd.Knot(cmd, config=local).ensure_image().built is False
    # attach rebuilds the same results in another Job
    assert spmd.attach(job.id, config=local).results(timeout=60) == results


def test_command_retries_and_timeout_like_a_function(local, engine):
    flaky = spmd.Command(["sh", "-c", 'echo "attempt $SPMD_ATTEMPT"; test "$SPMD_ATTEMPT" -ge 2'])
    [result] = spmd.Knot(flaky, retries=1, config=local).map([{}]).results(timeout=300)
    assert result.log == "attempt 2"
    slow = spmd.Command(["sleep", "60"])
    future = spmd.Knot(slow, timeout=2, config=local).map([{}]).futures[0]
    assert isinstance(future.exception(timeout=300), spmd.TaskTimedOut)


def test_python_is_installed_with_the_images_package_manager(local, engine):
    # A Debian image with Python purged: spmd installs python3 with apt-get (from the mirror
    # in the image's own sources.list) while it builds the derived image.
    from spmd.images import base as baseimage, build as images
    base = baseimage.resolve(None)
    image = _image("spmd-test-nopython", {}, (
        f"FROM {base}\nRUN apt-get purge -y --allow-remove-essential python3 python3-minimal "
        "python3.11 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib "
        "libpython3-stdlib >/dev/null && apt-get autoremove -y >/dev/null && ! command -v python3\n"))
    image_id = engine.images.get(image).id
    assert images._python_of(image_id) is None
    knot = spmd.Knot(spmd.Command(["sh", "-c", "echo $(command -v python3) on {0}"], image=image),
                     config=local)
    # this test's own images, removed so that every run installs Python again
    stage = f"{images.PYTHON_STAGE}:{image_id.split(':')[-1][:20]}"
    derived = f"{images.LOCAL_REPOSITORY}:{images.content_tag(knot.image_spec(), f'command:{image_id}')}"
    for name in (derived, stage):
        if docker_engine.image_exists(name):
            engine.images.remove(name, force=True)
    [result] = knot.map(["debian"]).results(timeout=300)
    assert result.log == "/usr/bin/python3 on debian"
    assert docker_engine.image_exists(stage)


def test_image_without_python_or_package_manager_is_a_clear_error(local, engine, tmp_path):
    # busybox has a shell but no python3 and no apt-get/apk/dnf/yum
    image = _image("spmd-test-busybox", {"busybox": (_busybox(), 0o755)},
                   "FROM scratch\nCOPY busybox /bin/busybox\n"
                   'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n')
    (tmp_path / "input.bin").write_bytes(b"not sent")
    knot = spmd.Knot(spmd.Command(["cat", "{0}"], image=image), config=local)
    with pytest.raises(spmd.CommandImageError, match="no python3 and none of the package managers") as info:
        knot.map([spmd.File(tmp_path / "input.bin")])
    assert "image that has python3" in str(info.value) and info.value.image == image
    assert list(knot.backend.store.list("")) == []  # the error came before any upload


def test_image_without_a_shell_is_a_clear_error(local, engine):
    image = _image("spmd-test-noshell", {"tool": (_busybox(), 0o755)},
                   "FROM scratch\nCOPY tool /tool\n")
    knot = spmd.Knot(spmd.Command(["/tool", "true"], image=image), config=local)
    with pytest.raises(spmd.CommandImageError, match="no python3 and no shell"):
        knot.map([{}])


def test_missing_image_is_a_clear_error(local, engine):
    knot = spmd.Knot(spmd.Command(["true"], image="spmd-test-no-such-image:0"), config=local)
    with pytest.raises(spmd.ImageError, match="not in the local engine and cannot be pulled"):
        knot.map([{}])


def test_bad_command_specs_are_refused_at_once():
    with pytest.raises(spmd.CommandSpecError, match="non-empty list of strings"):
        spmd.Command("dwi2tensor {dwi} out.mif")
    with pytest.raises(spmd.CommandSpecError, match="relative path"):
        spmd.Command(["tool"], outputs=["../escape.txt"])
    with pytest.raises(spmd.CommandSpecError, match="bad placeholder"):
        spmd.Command(["tool", "{unclosed"])
