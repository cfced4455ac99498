"""Tested as another user on this machine would attack: a second account, made for the test
with useradd and removed after, against a job's store in a folder anyone may enter."""
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

import spmd
from spmd import layout
from spmd.errors import ConfigError, StoreError

pytestmark = pytest.mark.docker
SYSTEM_PYTHON = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or "/usr/bin/python3"


@pytest.fixture(scope="module")
def attacker():
    """(name, uid, gid) of a fresh local account; removed after the module."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.fail("run the suite as root with useradd (passwd), as scripts/setup.sh expects: "
                    "the test makes a second account", pytrace=False)
    name = f"spmdatk{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        import pwd
        entry = pwd.getpwnam(name)
        yield name, entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", name], check=False)


def as_user(user, code: str) -> subprocess.CompletedProcess:
    """Run python code as the attacker (no spmd, no environment of ours)."""
    _, uid, gid = user
    return subprocess.run([SYSTEM_PYTHON, "-I", "-c", code], user=uid, group=gid,
                          extra_groups=[], capture_output=True, text=True, cwd="/", env={},
                          timeout=60)


@pytest.fixture
def shared(tmp_path):
    """A folder every user may enter and write, like /scratch or /tmp."""
    folder = Path(tempfile.mkdtemp(prefix="spmd-shared-", dir="/tmp"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def double(x):
    return 2 * x


def read_text(path):
    with open(path) as handle:
        return handle.read()


def test_another_user_can_neither_read_nor_plant_in_a_store(attacker, shared, engine):
    victim_home = shared / "victim"
    victim_home.mkdir(mode=0o755)
    subject = victim_home / "sub-01.txt"
    subject.write_text("private subject data")
    subject.chmod(0o600)
    before = os.umask(0o022)  # the usual umask of a shared machine
    try:
        config = {"store_dir": str(victim_home / "store"), "max_vcpus": 2}
        job = spmd.Knot(double, config=config).map([1, 2])
        assert job.results(timeout=300) == [2, 4]
        files = spmd.Knot(read_text, config=config).map([spmd.File(subject)])
        assert files.results(timeout=300) == ["private subject data"]
    finally:
        os.umask(before)
    root = victim_home / "store" / "spmd"
    output = root / layout.output_key(job.id, 0)
    blob = next((root / "data" / "sha256").iterdir())
    read = as_user(attacker, f"print(open({str(blob)!r}).read())")
    assert read.returncode != 0 and "PermissionError" in read.stderr
    walk = as_user(attacker, f"import os; print(list(os.walk({str(root)!r})))")
    assert "sub-01" not in walk.stdout and job.id not in walk.stdout
    plant = as_user(attacker, f"open({str(output)!r}, 'wb').write(b'planted')")
    assert plant.returncode != 0 and "PermissionError" in plant.stderr
    assert spmd.attach(job.id, config=config).results(timeout=60) == [2, 4]


def test_a_store_folder_another_user_made_first_is_refused(attacker, shared):
    planted = shared / "store"
    made = as_user(attacker, f"import os; os.makedirs({str(planted / 'spmd')!r}, mode=0o777); "
                             f"os.chmod({str(planted / 'spmd')!r}, 0o777)")
    assert made.returncode == 0, made.stderr
    with pytest.raises(StoreError, match="not a folder of this user's"):
        spmd.Knot(double, config={"store_dir": str(planted)}).backend.store


def test_a_spmd_toml_planted_by_another_user_runs_nothing(attacker, shared, tmp_path):
    marker = shared / "pwned"
    toml = (f'debian_mirror = "http://deb.debian.org/debian/$(touch {marker})"\n'
            f'base_image = "python:3.11-slim"\nstore_dir = "{shared}/theirs"\n')
    made = as_user(attacker, f"open({str(shared / 'spmd.toml')!r}, 'w').write({toml!r})")
    assert made.returncode == 0, made.stderr
    project = shared / "project"  # the victim's own project, under the shared folder
    project.mkdir()
    shown = subprocess.run([sys.executable, "-m", "spmd.cli", "config"], cwd=project, text=True,
                           capture_output=True, timeout=60,
                           env={**os.environ, "SPMD_USER_CONFIG": str(tmp_path / "none.toml")})
    assert shown.returncode == 0, shown.stderr
    assert "theirs" not in shown.stdout and "debian_mirror" not in shown.stdout
    assert "ignoring" in shown.stderr and str(shared / "spmd.toml") in shown.stderr
    assert not marker.exists()


@pytest.fixture(scope="module")
def lab(attacker):
    """(group name, gid, colleague (name, uid, gid)): a fresh group with a second account in
    it; the attacker is a third account, outside it. Removed after the module."""
    import grp
    import pwd
    group = f"spmdlab{uuid.uuid4().hex[:6]}"
    name = f"spmdcol{uuid.uuid4().hex[:6]}"
    subprocess.run(["groupadd", group], check=True)
    try:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "-G", group,
                        name], check=True)
        try:
            entry = pwd.getpwnam(name)
            yield group, grp.getgrnam(group).gr_gid, (name, entry.pw_uid, entry.pw_gid)
        finally:
            subprocess.run(["userdel", name], check=False)
    finally:
        subprocess.run(["groupdel", group], check=False)


def as_member(user, lab_gid, code: str) -> subprocess.CompletedProcess:
    """Run python code with spmd as a member of the lab's group (a login of theirs would have it):
    the system's Python (this one may be under a home the account cannot enter) with our packages."""
    import sysconfig
    _, uid, gid = user
    code = f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r}); {code}"
    return subprocess.run([SYSTEM_PYTHON, "-I", "-c", code], user=uid, group=gid,
                          extra_groups=[lab_gid], capture_output=True, text=True, cwd="/",
                          env={"SPMD_USER_CONFIG": "/nonexistent/config.toml"}, timeout=120)


def test_a_store_shared_with_a_group_is_read_by_its_members_only_and_written_by_none(
        attacker, lab, shared, engine):
    group, gid, colleague = lab
    config = {"store_dir": str(shared / "lab-store"), "share_with_group": group, "max_vcpus": 2}
    with pytest.raises(ConfigError, match=f"not in group '{group}'.*usermod -aG {group}"):
        spmd.Knot(double, config=config).map([1])  # this login is not in the group yet
    with pytest.raises(ConfigError, match="no group 'spmdnosuchgroup'"):
        spmd.Knot(double, config={**config, "share_with_group": "spmdnosuchgroup"}).map([1])
    groups, before = os.getgroups(), os.umask(0o077)  # the strictest umask: sharing still holds
    os.setgroups([*groups, gid])  # as a login of a member of the group
    try:
        job = spmd.Knot(double, config=config).map([1, 2])
        assert job.results(timeout=300) == [2, 4]
    finally:
        os.umask(before)
        os.setgroups(groups)
    root = shared / "lab-store" / "spmd"
    output = root / layout.output_key(job.id, 0)
    read = as_member(colleague, gid, "import spmd; print(spmd.attach("
                     f"{job.id!r}, config={{'store_dir': {str(shared / 'lab-store')!r}}}).results(timeout=60))")
    assert read.returncode == 0 and read.stdout.strip() == "[2, 4]", read.stderr
    plant = as_member(colleague, gid, f"open({str(output)!r}, 'wb').write(b'planted')")
    assert plant.returncode != 0 and "PermissionError" in plant.stderr
    beside = as_member(colleague, gid, f"open({str(output.parent / 'x.pkl')!r}, 'wb')")
    assert beside.returncode != 0 and "PermissionError" in beside.stderr
    spec = root / layout.prefix(job.id) / "queue" / "spec.json"  # the job's env stays private
    env = as_member(colleague, gid, f"print(open({str(spec)!r}).read())")
    assert env.returncode != 0 and "PermissionError" in env.stderr
    own_map = as_member(colleague, gid, "import spmd; spmd.Knot(abs, config={'store_dir': "
                        f"{str(shared / 'lab-store')!r}}}).map([1])")
    assert own_map.returncode != 0 and "shared with your group for reading" in own_map.stderr
    outsider = as_user(attacker, f"print(open({str(output)!r}, 'rb').read())")
    assert outsider.returncode != 0 and "PermissionError" in outsider.stderr
    key = root / "integrity" / job.id / "key"
    key.chmod(0o600)  # a key the member cannot read: nothing is unpickled unverified
    unverified = as_member(colleague, gid, "import spmd; print(spmd.attach("
                           f"{job.id!r}, config={{'store_dir': {str(shared / 'lab-store')!r}}})"
                           ".results(timeout=60))")
    assert unverified.returncode != 0 and "signing key" in unverified.stderr, unverified.stderr
    assert "[2, 4]" not in unverified.stdout
    private = {k: v for k, v in config.items() if k != "share_with_group"}
    assert spmd.attach(job.id, config=private).results(timeout=60) == [2, 4]
    again = as_member(colleague, gid, f"print(open({str(output)!r}, 'rb').read())")
    assert again.returncode != 0 and "PermissionError" in again.stderr  # the setting gone: private
