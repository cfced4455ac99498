"""Data references: files and folders on the client that a task sees as local paths.

    client                                   store                          task
    File("sub-01/dwi.nii.gz") ──sha256──>    data/sha256/<hash>   ──get_file──> /tmp/spmd-task-…/<hash>/dwi.nii.gz
    File("sub-01/")           ──tree──>      data/tree/<hash>     (a JSON listing of file hashes)
                                             jobs/<job>/files/<item>/<path>  <──put_file── spmd.outputs()/<path>

Content addressing makes uploads idempotent: a blob already in the store is not sent
again, by this map or any later one, from any client. Every transfer streams through
``ObjectStore.put_file``/``get_file``; no file is read into memory. Objects are named by
URLs ``<store url>#<key>``, which ``open_url`` opens in the client or in a task.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import DataError
from .object_store import ObjectStore

BLOBS = "data/sha256/"
TREES = "data/tree/"
_READ_CHUNK = 4 * 2**20


class File:
    """A file or folder on the client, passed to a task as a local path (a ``str``).

    ``spmd.File("sub-01/dwi.nii.gz")`` anywhere in an item (also inside lists, tuples and
    dicts) is uploaded once, by content, and the task receives the path of its copy, with
    the same base name. A folder arrives as a folder with the same tree.
    """

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike):
        resolved = Path(path).expanduser().absolute()
        if not resolved.exists():
            raise DataError(f"spmd.File({os.fspath(path)!r}): no such file or folder "
                            f"({resolved}); check the path, relative to {Path.cwd()}",
                            path=str(resolved))
        if not (resolved.is_file() or resolved.is_dir()):
            raise DataError(f"spmd.File({os.fspath(path)!r}) is neither a regular file nor a "
                            "folder", path=str(resolved))
        self.path = resolved

    def __repr__(self) -> str:
        return f"spmd.File({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)


@dataclass(frozen=True)
class DataRef:
    """What travels in place of a File: the store key of its content and its base name."""

    key: str
    name: str
    is_dir: bool
    size: int


@dataclass
class UploadReport:
    """What a map sends to the store for its data references (``job.uploads``)."""

    references: int = 0          # distinct files and folders referenced
    files: int = 0               # distinct regular files among them (folders by their files)
    bytes: int = 0               # their total size
    uploaded_objects: int = 0    # objects put by this map (blobs and folder listings)
    uploaded_bytes: int = 0      # bytes put by this map: 0 when the store had every blob
    # what to send: blob key -> file, listing key -> listing; references by path
    _blobs: dict = field(default_factory=dict, repr=False)
    _listings: dict = field(default_factory=dict, repr=False)
    _refs: dict = field(default_factory=dict, repr=False)


# -- client: hashing, then uploading -----------------------------------------------------

_HASHES: dict[tuple, str] = {}
_HASHES_LOCK = threading.Lock()


def file_sha256(path: Path) -> str:
    """The file's sha256, remembered per (path, size, mtime, inode) so a second map reads nothing."""
    st = path.stat()
    token = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    with _HASHES_LOCK:
        if token in _HASHES:
            return _HASHES[token]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    with _HASHES_LOCK:
        _HASHES[token] = digest.hexdigest()
    return digest.hexdigest()


def _blob(path: Path, report: UploadReport) -> tuple[str, int]:
    key = BLOBS + file_sha256(path)
    size = path.stat().st_size
    if key not in report._blobs:
        report._blobs[key] = path
        report.files += 1
        report.bytes += size
    return key, size


def reference(ref: File, report: UploadReport) -> DataRef:
    """The DataRef of a File, by content; what it needs in the store is noted in report
    (``send`` puts it). Nothing here talks to the store."""
    path = ref.path
    if path in report._refs:
        return report._refs[path]
    report.references += 1
    if path.is_file():
        key, size = _blob(path, report)
        result = DataRef(key=key, name=path.name, is_dir=False, size=size)
    else:
        files, dirs, total = {}, [], 0
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            rel = Path(dirpath).relative_to(path)
            dirs.extend(str(rel / d) for d in dirnames)
            for name in sorted(filenames):
                full = Path(dirpath) / name
                if not full.is_file():
                    continue  # sockets, fifos, broken links: not data
                key, size = _blob(full, report)
                files[str(rel / name)] = key
                total += size
        listing = json.dumps({"files": files, "dirs": dirs}, sort_keys=True).encode()
        key = TREES + hashlib.sha256(listing).hexdigest()
        report._listings[key] = listing
        result = DataRef(key=key, name=path.name, is_dir=True, size=total)
    report._refs[path] = result
    return result


def send(store: ObjectStore, report: UploadReport) -> None:
    """Put every blob and folder listing the store does not have yet (blobs first, so a
    listing is never there without its files)."""
    for key, path in report._blobs.items():
        if not store.exists(key):
            store.put_file(key, path)
            report.uploaded_objects += 1
            report.uploaded_bytes += path.stat().st_size
    for key, listing in report._listings.items():
        if not store.exists(key):
            store.put(key, listing)
            report.uploaded_objects += 1
            report.uploaded_bytes += len(listing)


def replace(value: Any, convert) -> Any:
    """value with every File/DataRef inside (lists, tuples, dicts) replaced by convert(it)."""
    if isinstance(value, (File, DataRef)):
        return convert(value)
    if type(value) in (list, tuple):
        items = [replace(v, convert) for v in value]
        return type(value)(items)
    if type(value) is dict:
        return {k: replace(v, convert) for k, v in value.items()}
    return value


# -- task: staging in, outputs out -------------------------------------------------------

_STAGE_ROOT: Path | None = None


def _stage_root() -> Path:
    """A folder of this process for staged inputs, removed when the process exits."""
    global _STAGE_ROOT
    if _STAGE_ROOT is None:
        _STAGE_ROOT = Path(tempfile.mkdtemp(prefix="spmd-task-"))
        atexit.register(shutil.rmtree, _STAGE_ROOT, True)
    return _STAGE_ROOT


def stage(store: ObjectStore, ref: DataRef) -> str:
    """The local path of ref's content, fetched once per task process."""
    folder = _stage_root() / ref.key.rsplit("/", 1)[-1][:32]
    target = folder / ref.name
    if target.exists():
        return str(target)
    folder.mkdir(parents=True, exist_ok=True)
    if not ref.is_dir:
        store.get_file(ref.key, target)
        return str(target)
    listing = json.loads(store.get(ref.key))
    building = folder / (".partial-" + ref.name)
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    for rel in listing["dirs"]:
        (building / rel).mkdir(parents=True, exist_ok=True)
    for rel, key in listing["files"].items():
        (building / rel).parent.mkdir(parents=True, exist_ok=True)
        store.get_file(key, building / rel)
    building.rename(target)
    return str(target)


def object_url(store_url: str, key: str) -> str:
    """The URL of one object: its store's URL and the key, ``<store url>#<key>``."""
    return f"{store_url}#{key}"


def files_prefix(job_id: str, index: int) -> str:
    """Where the outputs of item index of a job live in the store."""
    return f"jobs/{job_id}/files/{index:06d}/"


class ItemContext:
    """The item a task is running: its outputs folder and where those files go in the store."""

    def __init__(self, store: ObjectStore, job_id: str, index: int):
        self.store = store
        self.job_id = job_id
        self.index = index
        self._outputs: Path | None = None

    def outputs(self) -> Path:
        if self._outputs is None:
            self._outputs = Path(tempfile.mkdtemp(prefix=f"spmd-outputs-{self.index}-"))
        return self._outputs

    def url(self, relpath: str) -> str:
        return object_url(self.store.url, files_prefix(self.job_id, self.index) + relpath)

    def collect(self) -> list[str]:
        """Put every file under the outputs folder in the store; returns their relative paths."""
        if self._outputs is None:
            return []
        # Puts only: an AWS job role may read and write jobs/, not delete. A rerun of the item
        # overwrites the files of the same names.
        prefix = files_prefix(self.job_id, self.index)
        written = []
        for dirpath, _, filenames in sorted(os.walk(self._outputs)):
            for name in sorted(filenames):
                full = Path(dirpath) / name
                if full.is_file():
                    rel = full.relative_to(self._outputs).as_posix()
                    self.store.put_file(prefix + rel, full)
                    written.append(rel)
        return written

    def close(self) -> None:
        if self._outputs is not None:
            shutil.rmtree(self._outputs, ignore_errors=True)


_CURRENT = threading.local()


def current() -> ItemContext | None:
    return getattr(_CURRENT, "item", None)


def set_current(item: ItemContext | None) -> None:
    _CURRENT.item = item


def outputs() -> Path:
    """The folder for this item's output files; everything written there is stored with its result.

    Outside a task (the function run in-process, e.g. to check it), a fresh temporary folder.
    """
    item = current()
    if item is None:
        return Path(tempfile.mkdtemp(prefix="spmd-outputs-"))
    return item.outputs()


# -- both sides: objects by URL ----------------------------------------------------------

_STORES: dict[str, ObjectStore] = {}


def store_at(store_url: str) -> ObjectStore:
    """The store of a URL, opened once per process (clients of cloud SDKs are costly to make)."""
    if store_url not in _STORES:
        from .worker import open_store
        _STORES[store_url] = open_store(store_url)
    return _STORES[store_url]


def _split(url: str) -> tuple[ObjectStore, str]:
    store_url, sep, key = url.partition("#")
    if not sep or not key:
        raise DataError(f"{url!r} is not an spmd object URL (<store url>#<key>, as "
                        "job.output_urls() and Command results give)", path=url)
    return store_at(store_url), key


def open_url(url: str) -> IO[bytes]:
    """Open an object of a store for reading, by its URL; streamed to a temporary file first.

    Works in the client and in tasks, on any backend (the store comes from the plugin
    registry, with the credentials of wherever this runs), with no provider SDK in user code.
    """
    store, key = _split(url)
    local = getattr(store, "path", None)
    if callable(local):  # a store that is a directory here: open its file, no copy
        try:
            return open(local(key), "rb")
        except FileNotFoundError:
            from .errors import ObjectNotFound
            raise ObjectNotFound(key) from None
    fd, tmp = tempfile.mkstemp(prefix="spmd-open-")
    os.close(fd)
    try:
        store.get_file(key, tmp)
        return open(tmp, "rb")
    finally:
        os.unlink(tmp)  # the open handle keeps the data until it is closed


def download(store: ObjectStore, job_id: str, index: int, dest: str | os.PathLike) -> list[Path]:
    """Fetch the output files of one item into dest (a folder); returns their paths."""
    prefix = files_prefix(job_id, index)
    dest = Path(dest)
    paths = []
    for key in store.list(prefix):
        target = dest / key[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(key, target)
        paths.append(target)
    return paths


def output_urls(store: ObjectStore, job_id: str, index: int) -> dict[str, str]:
    """The output files of one item: relative path -> object URL."""
    prefix = files_prefix(job_id, index)
    return {key[len(prefix):]: object_url(store.url, key) for key in store.list(prefix)}
