"""A directory as an object store, through apache-libcloud's local storage driver.

Every backend that schedules on this machine keeps its jobs in one (the local backend
bind-mounts it at the same path into its task containers, so the client, the scheduler
and the tasks share one URL, ``file:///abs/path``). The object operations bypass the driver
for plain file-system calls, each for a reason: ``put`` writes a temporary file and renames
it (the driver writes in place, so a reader could see half an object); ``get`` and
``delete`` open and unlink the file (the driver takes an inter-process lock per object,
a file ``<sha256 of the path>.lock`` in the system's temporary folder that it never
removes: one left behind for every object ever read); ``list`` walks only the prefix's
folder (the driver walks everything).
Folders are 0700 and files 0600, or, when the owner's ``share_with_group`` names a group,
setgid 2750 and 0640: the group reads, nobody else does, and only the owner writes.
``put_parts`` writes a frame's parts one after the other and ``get_view`` reads straight into
the buffer a value is then built on, so large buffers go between memory and the file once;
that buffer is the reader's own memory, so what was verified stays what it holds.
``get_mapped`` maps the range copy-on-write instead (a task's input: no read, no copy; what
the task writes to it stays in the task).
"""
from __future__ import annotations

import hashlib
import logging
import mmap
import os
import shutil
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from spmd.errors import ConfigError, EngineError, ObjectNotFound, StoreError
from spmd.folders import private_folder
from .libcloud import LibcloudStore

log = logging.getLogger("spmd")

CONTAINER = "spmd"
PARTIAL_AGE = 900.0  # seconds without a write after which a temporary file's writer is gone


FILE_MODE = 0o600  # a store's files and folders are its user's alone, whatever the umask
FOLDER_MODE = 0o700
# share_with_group: the group reads and never writes (a member who could write could plant a
# pickle its owner loads, or replace a job's signing key); setgid, so all made inside is the group's
SHARED_FILE_MODE = 0o640
SHARED_FOLDER_MODE = 0o2750
KEEP = "keep"  # DirectoryStore(group=KEEP): as the owner's client last chose (schedulers, tasks)


def _my_groups() -> set[int]:
    return {os.getegid(), *os.getgroups()}


def _shared(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == SHARED_FOLDER_MODE


def group_id(name: str) -> int:
    """The gid of the group ``share_with_group`` names, which this user must be in."""
    import grp
    import pwd
    try:
        entry = grp.getgrnam(name)
    except KeyError:
        raise ConfigError(f"share_with_group = {name!r}: there is no group {name!r} on this "
                          "machine; ask an admin to make it (groupadd) with your lab's accounts, "
                          "or remove the setting to keep the store private",
                          key="share_with_group") from None
    if entry.gr_gid not in _my_groups():
        me = pwd.getpwuid(os.getuid()).pw_name
        hint = ("you were added after this session began: log in again (or run `newgrp "
                f"{name}`)" if me in entry.gr_mem else
                f"ask an admin to add you (`usermod -aG {name} {me}`), then log in again")
        raise ConfigError(f"share_with_group = {name!r}: this user ({me}) is not in group "
                          f"{name!r}; {hint}", key="share_with_group")
    return entry.gr_gid


def private(folder: Path, group: int | None | str = None) -> None:
    """Make folder (and missing parents) and leave it readable by its owner alone, so nothing
    under it is readable or writable by other users: inputs, results, logs, pickles. With a
    group id, it is the group's to read instead (setgid, 2750); with KEEP, a shared folder stays
    shared. A folder another user made (first, in a shared parent, to read or plant what goes
    in) is refused."""
    folder.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    st = folder.lstat()
    if st.st_uid != os.getuid() or not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"the store folder {folder} is not a folder of this user's (owner uid "
                         f"{st.st_uid}); another user may have made it to read or plant job "
                         "data: remove it (or ask an admin to), or choose another store_dir")
    if group == KEEP:
        group = st.st_gid if _shared(st) else None
    try:
        if group is not None:
            _reachable(folder.parent, group)
        if group is not None and st.st_gid != group:
            os.chown(folder, -1, group)
            st = folder.lstat()  # (chown drops setgid)
        wanted = FOLDER_MODE if group is None else SHARED_FOLDER_MODE
        if stat.S_IMODE(st.st_mode) != wanted:
            folder.chmod(wanted)
    except OSError:  # a read-only store: readers need no change
        pass


def _reachable(root: Path, group: int) -> None:
    """Let the group enter the store's root folder when it is spmd's alone (this user's, holding
    nothing else), and warn about a folder the group cannot enter: its members could not reach
    the shared store."""
    st = root.stat()
    if (st.st_uid == os.getuid() and not (st.st_gid == group and st.st_mode & 0o010)
            and {p.name for p in root.iterdir()} <= {CONTAINER, ".process-usage"}):
        if st.st_gid != group:
            os.chown(root, -1, group)
        root.chmod(stat.S_IMODE(st.st_mode) | 0o010)  # enter only: its listing stays private
    for folder in (root, *root.parents):
        st = folder.stat()
        if not (st.st_mode & 0o001 or (st.st_gid == group and st.st_mode & 0o010)):
            log.warning("share_with_group: the group cannot enter %s (mode %04o), so its members "
                        "cannot reach the store under it: `chmod o+x %s` or choose a store_dir "
                        "they can reach", folder, stat.S_IMODE(st.st_mode), folder)
            return


def shared_with_me(folder: Path) -> bool:
    """Whether folder is another user's store folder shared with a group of this user's."""
    try:
        st = folder.lstat()
    except FileNotFoundError:
        return False
    return st.st_uid != os.getuid() and _shared(st) and st.st_gid in _my_groups()


#: where keep_in_memory puts a job's inputs: a tmpfs on every Linux
MEMORY_ROOT = Path("/dev/shm")
MEMORY_CAP = 4 * 2**30  # bytes of one job's inputs in memory at most
MEMORY_SHARE = 0.25     # of the tmpfs's free space

class DirectoryStore(LibcloudStore):
    """A directory holding objects as files under ``<root>/spmd/``."""

    scheme = "file"

    def __init__(self, root: str | os.PathLike, *, group: str | None = KEEP):
        """group: the owner's ``share_with_group`` (a group name, or None: private); KEEP for
        the processes that only work in the store (schedulers, tasks). Another user's store
        shared with a group of this user's opens for reading (``reader``)."""
        self.root = Path(root).expanduser().resolve()
        folder = self.root / CONTAINER
        self.reader = shared_with_me(folder)
        if not self.reader:
            private(folder, group_id(group) if group not in (None, KEEP) else group)
        self.shared = _shared(folder.stat())
        self.file_mode = SHARED_FILE_MODE if self.shared else FILE_MODE
        self.folder_mode = SHARED_FOLDER_MODE if self.shared else FOLDER_MODE
        super().__init__(None, CONTAINER, url=self.root.as_uri())

    @property
    def driver(self):
        """libcloud's local driver, made on first use: importing libcloud (and requests) takes
        about 0.1 s, which a warm container's server and a scheduler would pay at each start
        for the few operations that go through the driver."""
        if self._driver is None:
            from libcloud.storage.drivers.local import LocalStorageDriver
            self._driver = LocalStorageDriver(str(self.root))
        return self._driver

    @driver.setter
    def driver(self, value) -> None:
        self._driver = value

    def check_owner(self) -> None:
        if self.reader:
            owner = (self.root / CONTAINER).stat().st_uid
            raise StoreError(f"the store {self.root} is another user's (uid {owner}), shared "
                             "with your group for reading: read its jobs with spmd.attach(job_id, "
                             "config={'store_dir': ...}), and run your own maps with a store_dir "
                             "of your own (if this store should be yours, another user made it "
                             "first: remove it, or ask an admin to)")

    def make_folders(self, folder: Path) -> bool:
        """Make folder and its missing parents, each shared with the group as the folder they
        are made in is (whatever the umask); whether folder is shared. A folder decides, not the
        store's root: a task container sees its job's folder but not the root."""
        missing = []
        while not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        shared = _shared(folder.stat())
        for made in reversed(missing):
            made.mkdir(exist_ok=True)
            if shared:
                made.chmod(SHARED_FOLDER_MODE)
        return shared

    @classmethod
    def from_url(cls, url: str) -> "DirectoryStore":
        if not url.startswith("file://"):
            raise ValueError(f"not a file:// URL: {url!r}")
        return cls(url[len("file://"):])

    def keep_in_memory(self, prefix: str, size: int) -> bool:
        """The prefix's folder becomes a link to a folder of this user's on /dev/shm, when
        ``size`` is at most MEMORY_SHARE of its free space and MEMORY_CAP; not for a store
        shared with a group (its members could not follow the link)."""
        folder = self.path(prefix.rstrip("/"))
        if self.shared or self.reader or os.path.lexists(folder):
            return False
        try:
            st = os.statvfs(MEMORY_ROOT)
            if size > min(MEMORY_CAP, st.f_bavail * st.f_frsize * MEMORY_SHARE):
                return False
            base = private_folder(MEMORY_ROOT / f"spmd-{os.getuid()}")
            target = base / hashlib.sha1(str(self.root).encode()).hexdigest()[:16] / prefix.strip("/")
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.make_folders(folder.parent)
            os.symlink(target, folder)
        except (OSError, EngineError) as exc:
            log.info("%s stays on disk: %s", prefix, exc)
            return False
        return True

    def in_memory(self, prefix: str) -> Path | None:
        """Where keep_in_memory put the prefix's objects; None when they are on disk (or
        the link leads anywhere but this user's memory folder)."""
        folder = self.path(prefix.rstrip("/"))
        if not folder.is_symlink():
            return None
        target = Path(os.readlink(folder))
        base = MEMORY_ROOT / f"spmd-{os.getuid()}"
        return target if target.is_relative_to(base) and ".." not in target.parts else None

    def release_memory(self, prefix: str) -> None:
        target = self.in_memory(prefix)
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)
            self.path(prefix.rstrip("/")).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        """Also frees the memory of the jobs' inputs under prefix (spmd clean)."""
        folder = self.path(prefix.rstrip("/")) if prefix.strip("/") else self.root / CONTAINER
        if folder.is_dir() and not folder.is_symlink():
            links = [folder / "input", *folder.glob("*/input"), *folder.glob("jobs/*/input")]
            for link in [p for p in links if p.is_symlink()]:
                self.release_memory(str(link.relative_to(self.root / CONTAINER)))
                link.unlink(missing_ok=True)  # one that leads elsewhere: only the link goes
        return super().delete_prefix(prefix)

    def path(self, key: str) -> Path:
        """The file that holds key."""
        if key.startswith("/") or ".." in key.split("/"):
            raise StoreError(f"invalid key {key!r}")
        return self.root / CONTAINER / key

    def put(self, key: str, data: bytes) -> None:
        self.put_parts(key, [data])

    def put_parts(self, key: str, parts: Sequence) -> None:
        """Write a frame's parts one after the other into a temporary file, then rename."""
        with self._replacing(key) as tmp, open(tmp, "wb", buffering=0) as handle:
            for part in parts:
                view = memoryview(part).cast("B")
                while view:
                    view = view[handle.write(view):]

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        """Copy the file in (the kernel copies; no bytes pass through Python), then rename."""
        with self._replacing(key) as tmp:
            shutil.copyfile(path, tmp)

    @contextmanager
    def _replacing(self, key: str) -> Iterator[str]:
        """A temporary file beside key's, renamed over it when the block ends without error
        (readers see the old object or the new one, never part of one), else removed."""
        self.check_owner()
        target = self.path(key)
        shared = self.make_folders(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.close(fd)
        try:
            yield tmp
            os.chmod(tmp, SHARED_FILE_MODE if shared else FILE_MODE)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def remove_partial(self, prefix: str = "data/", older_than: float = PARTIAL_AGE) -> int:
        """Remove what writers that died left under prefix: temporary files of puts and folders
        of fetches (``.tmp-*``, ``.partial-*``) untouched for older_than seconds. A live write
        keeps touching its file, so it is never taken. Returns how many were removed."""
        root, cutoff, removed = self.path(prefix), time.time() - older_than, 0
        if not root.is_dir():
            return 0
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*filenames, *dirnames]:
                if not name.startswith((".tmp-", ".partial-")):
                    continue
                found = Path(dirpath) / name
                try:
                    if found.lstat().st_mtime >= cutoff:
                        continue
                    if found.is_dir():
                        shutil.rmtree(found)
                    else:
                        found.unlink()
                    removed += 1
                except OSError:  # another sweeper, or a read-only store: nothing to do
                    continue
            dirnames[:] = [d for d in dirnames if not d.startswith(".partial-")]
        return removed

    def get_file(self, key: str, path: str | os.PathLike) -> None:
        """Copy the object's file out (a copy, not a link: the task may change its file)."""
        source = self.path(key)
        if not source.is_file():
            raise ObjectNotFound(key)
        target = Path(path)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".spmd-")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        try:
            with open(self.path(key), "rb") as handle:
                handle.seek(start or 0)
                return handle.read(-1 if end is None else max(0, end - (start or 0)))
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc

    def get_view(self, key: str, start: int | None = None, end: int | None = None) -> memoryview:
        # One read straight into the buffer the value will live in. Private memory, not a map
        # of the file: a task of the job may rewrite or truncate the file in place after its
        # signature was checked (spmd.integrity), and a map holds a file descriptor for as
        # long as any array built on it lives.
        try:
            with open(self.path(key), "rb", buffering=0) as handle:
                start, end = self._span(handle, start, end)
                buffer = memoryview(bytearray(end - start))
                handle.seek(start)
                done = 0
                while done < len(buffer):
                    n = handle.readinto(buffer[done:])
                    if not n:
                        break
                    done += n
                return buffer[:done]
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc

    def get_mapped(self, key: str, start: int | None = None, end: int | None = None) -> memoryview:
        """The range as a copy-on-write map of the object's file: pages are read when used, and
        a write to the view stays in this process's memory, never reaching the file."""
        try:
            with open(self.path(key), "rb", buffering=0) as handle:
                start, end = self._span(handle, start, end)
                if end == start:
                    return memoryview(bytearray())
                base = start - start % mmap.ALLOCATIONGRANULARITY  # a map starts on a page
                mapped = mmap.mmap(handle.fileno(), end - base, access=mmap.ACCESS_COPY,
                                   offset=base)
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        return memoryview(mapped)[start - base:]

    @staticmethod
    def _span(handle, start: int | None, end: int | None) -> tuple[int, int]:
        """[start, end) clipped to the open file's size."""
        size = os.fstat(handle.fileno()).st_size
        start = min(start or 0, size)
        return start, size if end is None else max(start, min(end, size))

    def delete(self, key: str) -> None:
        """Remove the object's file, then its folders up to the container while they are empty."""
        target = self.path(key)
        try:
            target.unlink()
        except (FileNotFoundError, IsADirectoryError):
            return
        base = self.root / CONTAINER
        folder = target.parent
        while folder != base and base in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone): the folders above are not empty either
                break
            folder = folder.parent

    def exposed(self, key: str) -> list[str]:
        """Other users' access to the object: the store's folder (0700, this user's) and the
        object's file (0600) must each let nobody else in; in a shared store, nobody but the
        store's group, and it only to read."""
        found = []
        base = self.root / CONTAINER
        group = base.stat().st_gid
        for path in (base, self.path(key)):
            st = path.stat()
            if st.st_uid != os.getuid():
                found.append(f"{path} belongs to uid {st.st_uid}")
            allowed = 0o050 if self.shared and st.st_gid == group else 0
            if st.st_mode & 0o077 & ~allowed:
                found.append(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}")
        return found

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / CONTAINER
        folder = base / prefix.rpartition("/")[0]
        keys = []
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            rel = os.path.relpath(dirpath, base)
            # a linked folder is walked only when it holds a job's inputs in memory
            dirnames[:] = [d for d in dirnames if d not in (".lock", ".hash") and (
                not os.path.islink(os.path.join(dirpath, d))
                or self.in_memory(d if rel == "." else f"{rel}/{d}") is not None)]
            for name in filenames:
                if name.startswith(".tmp-") or not os.path.exists(os.path.join(dirpath, name)):
                    continue  # a temporary file, or the link to inputs freed or lost
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return iter(sorted(keys))
