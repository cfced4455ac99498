"""``runtime = "charliecloud"`` on the test Slurm: the task image converted once per tag into
``shared_dir/images/``, run by ch-run as a user who is not root, inside the job's cgroup.

The kit runs in a pytest of that user's own (``charliecloud_kit.py``, through ``runuser``),
on this session's cluster. Only the contracts a runtime changes run, to stay within the
suite's time budget: the registry (conversion), the queue, results, errors, env, memory,
timeout, cancel, staged files and Command jobs in a user's image (``KIT`` below); the rest
of the kit exercises the store and the client, which are the venv runtime's, tested there.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

import spmd
from spmd.batch_queue import ArraySpec, Resources
from spmd_slurm import runtimes, script

RUNNING, SHARED_DIR = "SPMD_TEST_SLURM_RUNNING", "SPMD_TEST_SLURM_SHARED_DIR"  # conftest.py

ROOT = Path(__file__).resolve().parents[2]
USER = "spmd-hpc"
#: the kit's tests that a container runtime can break (see the module docstring)
KIT = ["test_registry_", "test_queue_runs_an_array_and_reports_each_task",
       "test_results_in_input_order", "test_remote_exception_keeps_type_message_and_traceback",
       "test_environment_reaches_the_task", "test_memory_limit_ends_as_out_of_memory",
       "test_timeout_ends_as_timed_out", "test_cancel_stops_running_and_pending_tasks",
       "test_data_file_arrives_as_a_local_path_with_its_bytes", "test_command_in_a_user_image",
       "test_image_reuse"]


@pytest.fixture(scope="module")
def hpc_user() -> str:
    """A user who is not root, in the docker group (the client builds the task image with
    Docker, as on every backend); made once, kept for later sessions."""
    if os.getuid() != 0:
        pytest.fail("this test makes a user account: run it as root", pytrace=False)
    for tool in ("ch-run", "ch-convert"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing: run scripts/setup.sh (it installs Debian's "
                        "charliecloud-runtime and charliecloud-builders)", pytrace=False)
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--user-group", "--groups", "docker", USER],
                       check=True)
    return USER


@pytest.fixture(scope="module")
def hpc_shared_dir(hpc_user, slurm_cluster):
    """A shared_dir of that user's, private (0700), under /tmp where they can make it."""
    folder = Path(tempfile.mkdtemp(prefix="spmd-hpc-", dir="/tmp"))
    shutil.chown(folder, hpc_user, hpc_user)
    yield folder
    # converted images are hundreds of MB of small files: removed without waiting for it
    subprocess.Popen(["rm", "-rf", "--one-file-system", str(folder)], start_new_session=True)


@pytest.fixture(scope="module")
def hpc_python(tmp_path_factory) -> list[str]:
    """A Python that user can run with this venv's packages: the interpreter behind the venv
    may sit in root's home, so Debian's own 3.11 (the minor version is what must match), with
    the venv's site-packages added by a sitecustomize."""
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        pytest.fail(f"{system} missing (Debian's python3 of this minor version)", pytrace=False)
    folder = Path(tempfile.mkdtemp(prefix="spmd-hpc-python-", dir="/tmp"))
    folder.chmod(0o755)
    (folder / "sitecustomize.py").write_text(
        f"import site\nsite.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    yield [f"PYTHONPATH={folder}", str(system)]
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.docker
def test_the_kit_passes_under_charliecloud_as_a_user_who_is_not_root(hpc_user, hpc_shared_dir,
                                                                     hpc_python, slurm_cluster):
    home = pwd.getpwnam(hpc_user).pw_dir
    env = {"PATH": os.environ["PATH"], "HOME": home, "USER": hpc_user, "LANG": "C.UTF-8",
           "SLURM_CONF": os.environ["SLURM_CONF"], RUNNING: str(slurm_cluster),
           SHARED_DIR: str(hpc_shared_dir)}
    run = subprocess.run(
        ["runuser", "-u", hpc_user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
         *hpc_python, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
         "-rfE", "--durations=8", str(ROOT / "tests" / "slurm" / "charliecloud_kit.py"), "-k", " or ".join(KIT)],
        cwd=ROOT, capture_output=True, text=True)
    print(run.stdout[-1500:])  # the inner run's slowest tests, for the suite's time budget
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout, run.stdout[-3000:]
    # Tasks ran as that user (the store's files are theirs), on converted images.
    images = hpc_shared_dir / "images"
    converted = [p for p in images.iterdir() if (p / runtimes.READY).exists()]
    assert converted and all(p.stat().st_uid == pwd.getpwnam(hpc_user).pw_uid for p in converted)
    assert not [p for p in images.iterdir() if p.name.endswith(".partial")]  # none half made


@pytest.mark.docker
def test_the_mrtrix3_command_example_runs_under_charliecloud(hpc_user, hpc_shared_dir,
                                                            hpc_python, slurm_cluster):
    """examples/mrtrix_command.py on this cluster, as that user: its task image (Debian's
    mrtrix3 on spmd's) is the one the local example test built, same content, same tag, so
    only the conversion is new here; map() builds it first when the engine lacks it."""
    home = pwd.getpwnam(hpc_user).pw_dir
    env = {"PATH": os.environ["PATH"], "HOME": home, "USER": hpc_user, "LANG": "C.UTF-8",
           "SLURM_CONF": os.environ["SLURM_CONF"], "SPMD_USER_CONFIG": f"{home}/none.toml",
           "SPMD_BACKEND": "slurm", "SPMD_SHARED_DIR": str(hpc_shared_dir),
           "SPMD_RUNTIME": "charliecloud", "SPMD_PARTITION": "debug", "SPMD_POLL_INTERVAL": "0.25"}
    started = time.monotonic()
    run = subprocess.run(
        ["runuser", "-u", hpc_user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
         *hpc_python, str(ROOT / "examples" / "mrtrix_command.py"), "--subjects", "2",
         "--backend", "slurm"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    print(f"{time.monotonic() - started:.1f}s in all;", run.stdout[-1500:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "MRtrix3 agrees with DIPY (2 subjects)" in run.stdout, run.stdout
    assert run.stdout.count("exit 0, fa.nii.gz downloaded") == 2, run.stdout
    # it ran under ch-run, in the converted image that holds MRtrix3
    job_id = run.stdout.split("job ", 1)[1].split(":", 1)[0]
    batch = hpc_shared_dir / "store" / "spmd" / "jobs" / job_id / "slurm" / "array-000000.sh"
    line = next(x for x in batch.read_text().splitlines() if "ch-run " in x)
    image = line.split(" -- ")[0].split()[-1]  # ch-run ... <image folder> -- ...
    assert (Path(image) / runtimes.READY).exists() and (Path(image) / "usr/bin/dwi2tensor").exists()


def test_a_missing_runtime_names_its_package(slurm_config, monkeypatch):
    knot = spmd.Knot(abs, backend="slurm", config={**slurm_config, "runtime": "charliecloud"})
    monkeypatch.setattr(shutil, "which", lambda name: None if name.startswith("ch-") else "/bin/x")
    with pytest.raises(spmd.ConfigError, match="charliecloud-runtime") as caught:
        knot.map([1])
    assert caught.value.key == "runtime"


def test_the_charliecloud_command_runs_the_converted_folder_in_a_clean_environment():
    spec = ArraySpec(job_id="j1", image="spmd-task:abc123", command=("python3", "-m", "spmd.task.worker"),
                     n_tasks=2, resources=Resources(timeout=5), env={"SECRET": "s e$cret"})
    options = script.Options(runtime="charliecloud", shared_dir="/sh")
    text = script.render(spec, 0, 2, options, "/sh/marks", "/sh/%A_%a.out",
                         ["/sh/store/spmd/jobs/j1", "/sh/store/spmd/data"])
    line = next(x for x in text.splitlines() if "ch-run" in x)
    assert line.split()[:4] == ["timeout", "--kill-after=5", '"$timeout_s"', "ch-run"]
    assert "--private-tmp '--unset-env=*' --set-env --env-no-expand --set-env=\"$envfile\"" in line
    assert "--bind=/sh/store/spmd/jobs/j1 --bind=/sh/store/spmd/data /sh/images/abc123 --" in line
    assert "--bind=/sh " not in line and "s e$cret" not in line  # values never on the command line
    assert "export SECRET='s e$cret'" in text and '"SECRET=${SECRET-}"' in text
    assert "CUDA_VISIBLE_DEVICES" not in text
    # a task given GPUs learns from Slurm's variables which ones, inside the clean environment
    gpu = ArraySpec(job_id="j1", image="spmd-task:abc123", command=("python3", "-m", "spmd.task.worker"),
                    n_tasks=1, resources=Resources(gpus=1))
    text = script.render(gpu, 0, 1, options, "/sh/marks", "/sh/%A_%a.out", [])
    assert '"CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-}"' in text
    assert '"SLURM_JOB_GPUS=${SLURM_JOB_GPUS-}"' in text
