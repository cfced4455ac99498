"""Privacy and isolation on the local backend: a private store whatever the umask, hardened task
containers, a socket folder no other user can plant, no module planted in the caller's folder
imported by the scheduler."""
import os
import stat
from pathlib import Path

import pytest

import spmd
from spmd.folders import private_folder

pytestmark = pytest.mark.docker
WAIT = 180


def container_status():
    """The task's capability and privilege flags, from the kernel."""
    fields = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return {"CapEff": fields["CapEff"], "NoNewPrivs": fields["NoNewPrivs"]}


def square(x):
    return x * x


def test_the_store_is_private_whatever_the_umask(local, engine):
    before = os.umask(0o002)
    try:
        job = spmd.Knot(square, config=local).map(range(3), chunksize=1)
        assert job.results(timeout=WAIT) == [0, 1, 4]
    finally:
        os.umask(before)
    root = Path(local["store_dir"]) / "spmd"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in files), \
        [(str(p), oct(p.stat().st_mode)) for p in files if p.stat().st_mode & 0o077]


def test_task_containers_have_no_capabilities_and_no_new_privileges(local, engine):
    job = spmd.Knot(container_status, config=local).map([()], starmap=True)
    assert job.results(timeout=WAIT) == [{"CapEff": "0000000000000000", "NoNewPrivs": "1"}]


def test_a_module_planted_in_the_callers_folder_is_not_imported_by_the_scheduler(
        local, engine, tmp_path, monkeypatch):
    marker = tmp_path / "planted-ran"
    (tmp_path / "selectors.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                           "raise SystemExit('planted')\n")
    monkeypatch.chdir(tmp_path)
    job = spmd.Knot(square, config=local).map([3])
    assert job.results(timeout=WAIT) == [9]
    assert not marker.exists()


def test_a_socket_folder_of_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    with pytest.raises(spmd.EngineError, match="not a folder of this user's"):
        private_folder(theirs)
    open_to_all = tmp_path / "mine"
    open_to_all.mkdir(mode=0o777)
    os.chmod(open_to_all, 0o777)
    private_folder(open_to_all)
    assert stat.S_IMODE(open_to_all.stat().st_mode) == 0o700
    link = tmp_path / "link"
    link.symlink_to(open_to_all)
    with pytest.raises(spmd.EngineError):
        private_folder(link)


def poke(target):
    """Tries to read and to write target from inside a task; says what happened to each."""
    found = {}
    try:
        with open(target, "rb") as handle:
            handle.read(1)
        found["read"] = "ok"
    except OSError as exc:
        found["read"] = exc.strerror
    try:
        with open(target, "ab") as handle:
            handle.write(b"planted")
        found["write"] = "ok"
    except OSError as exc:
        found["write"] = exc.strerror
    return found


def poke_own_spec():
    """poke() on the spec of the job this task belongs to (a restarted scheduler trusts it)."""
    from urllib.parse import urlparse
    root = urlparse(os.environ["SPMD_STORE_URL"]).path
    return poke(f"{root}/spmd/jobs/{os.environ['SPMD_JOB_ID']}/queue/spec.json")


def test_a_task_reaches_neither_other_jobs_nor_its_own_spec(local, engine):
    other = spmd.Knot(square, config=local).map([2])
    assert other.results(timeout=WAIT) == [4]
    store = other.backend.store
    theirs = str(store.path(f"jobs/{other.id}/output/000000.pkl"))
    job = spmd.Knot(poke, config=local).map([theirs])
    assert job.results(timeout=WAIT) == [{"read": "No such file or directory",
                                          "write": "No such file or directory"}]
    own = spmd.Knot(poke_own_spec, config=local).map([()], starmap=True)
    assert own.results(timeout=WAIT) == [{"read": "ok", "write": "Read-only file system"}]
    assert spmd.attach(other.id, config=local).results(timeout=WAIT) == [4]  # nothing planted
