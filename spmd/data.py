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
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import protocol, remote
from .errors import DataError
from .stores.object_store import ObjectStore

log = logging.getLogger("spmd")

BLOBS = "data/sha256/"
TREES = "data/tree/"
_READ_CHUNK = 4 * 2**20


class File:
    """A file or folder passed to a task as a local path (a ``str``): on this machine, or by URL.

    ``spmd.File("sub-01/dwi.nii.gz")`` anywhere in an item (also inside lists, tuples and
    dicts) is uploaded once, by content, and the task receives the path of its copy, with
    the same base name. A folder arrives as a folder with the same tree.

    ``spmd.File("s3://bucket/sub-01/", anon=True)`` (any fsspec URL; keyword arguments are its
    options) is checked at ``map()`` by its metadata alone, and its bytes are moved by the side
    the backend's rule names (``spmd.backend.DataRule``), never through the client.
    """

    __slots__ = ("path", "url", "options")

    def __init__(self, path: str | os.PathLike, **options: Any):
        if isinstance(path, str) and path.startswith("file://"):
            path = path[len("file://"):]
        if remote.is_url(path):
            remote.filesystem_class(path)  # the scheme is known and its package installed
            self.url, self.path = path, None
            self.options = remote.check_options(path, options)
            return
        if options:
            raise DataError(f"spmd.File({os.fspath(path)!r}, {', '.join(options)}=...): options "
                            "apply to URLs (s3://, https://, ...), not to paths on this machine",
                            path=os.fspath(path))
        resolved = Path(path).expanduser().absolute()
        if not resolved.exists():
            raise DataError(f"spmd.File({os.fspath(path)!r}): no such file or folder "
                            f"({resolved}); check the path, relative to {Path.cwd()}",
                            path=str(resolved))
        if not (resolved.is_file() or resolved.is_dir()):
            raise DataError(f"spmd.File({os.fspath(path)!r}) is neither a regular file nor a "
                            "folder", path=str(resolved))
        self.path, self.url, self.options = resolved, None, {}

    def __repr__(self) -> str:
        if self.url is not None:
            extra = "".join(f", {k}={v!r}" for k, v in sorted(self.options.items()))
            return f"spmd.File({self.url!r}{extra})"
        return f"spmd.File({str(self.path)!r})"

    def _identity(self) -> tuple:
        return (str(self.path), self.url, tuple(sorted(self.options.items(), key=repr)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and other._identity() == self._identity()

    def __hash__(self) -> int:
        return hash((str(self.path), self.url))


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
    remote_references: int = 0   # distinct URLs and shared paths referenced (read where they are)
    remote_bytes: int = 0        # their total size, which no client sends
    staged_bytes: int = 0        # bytes this client fetched for tasks that cannot (DataRule "client")
    # what to send: blob key -> file, listing key -> listing; references by path
    _blobs: dict = field(default_factory=dict, repr=False)
    _listings: dict = field(default_factory=dict, repr=False)
    _refs: dict = field(default_factory=dict, repr=False)
    _remote: dict = field(default_factory=dict, repr=False)  # (url, options, in_place) -> UrlRef


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


def _remote_key(ref: File) -> tuple[str, tuple, bool]:
    if ref.url is not None:
        return ref.url, tuple(sorted(ref.options.items())), False
    return str(ref.path), (), True


def resolve_remote(files: list[File], report: UploadReport, in_place=lambda path: False) -> None:
    """Look up every URL (and shared path) among files once, in parallel: metadata only."""
    wanted = [_remote_key(f) for f in files if f.url is not None or in_place(f.path)]
    fresh = [w for w in dict.fromkeys(wanted) if w not in report._remote]
    for key, found in remote.resolve_many(fresh).items():
        report._remote[key] = found
        report.remote_references += 1
        report.remote_bytes += found.size


def reference(ref: File, report: UploadReport, in_place=lambda path: False) -> DataRef | remote.UrlRef:
    """The DataRef of a File, by content; what it needs in the store is noted in report
    (``send`` puts it). A URL or shared path becomes its UrlRef (``resolve_remote`` first).
    Nothing here talks to the store."""
    if ref.url is not None or in_place(ref.path):
        key = _remote_key(ref)
        if key not in report._remote:
            resolve_remote([ref], report, in_place)
        return report._remote[key]
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


def find(value: Any, kind: type) -> list:
    """Every instance of kind inside value (lists, tuples, dicts), in order."""
    found: list = []
    replace(value, lambda v: found.append(v) or v, kind)
    return found


def send(store: ObjectStore, report: UploadReport) -> None:
    """Put every blob and folder listing the store does not have yet (blobs first, so a
    listing is never there without its files). A directory store first loses the partial
    files of uploads whose writer died (a client killed mid-upload)."""
    sweep = getattr(store, "remove_partial", None)
    if sweep is not None and (report._blobs or report._remote):
        sweep()
    for key, path in report._blobs.items():
        if not store.exists(key) or not _intact(store, key):
            store.put_file(key, path)
            report.uploaded_objects += 1
            report.uploaded_bytes += path.stat().st_size
    for key, listing in report._listings.items():
        if not store.exists(key) or store.get(key) != listing:
            store.put(key, listing)
            report.uploaded_objects += 1
            report.uploaded_bytes += len(listing)


def _intact(store: ObjectStore, key: str) -> bool:
    """Whether a blob a directory store holds still has the content its key names (checked
    before it is reused; remembered per file like the client's own hashes). A store that is
    not a directory is trusted to keep what it was given."""
    local = getattr(store, "path", None)
    if not callable(local):
        return True
    if file_sha256(Path(local(key))) == key[len(BLOBS):]:
        return True
    log.warning("spmd: %s in the store does not match its hash; sending it again", key)
    return False


def uploads_key(job_id: str) -> str:
    """Where a job records the uploaded objects it references (``spmd clean`` reads it)."""
    return f"jobs/{job_id}/uploads.json"


def record_uploads(store: ObjectStore, job_id: str, report: UploadReport) -> None:
    """Note which blobs and folder listings the job references, so that cleaning it removes
    those no other job references."""
    keys = sorted({*report._blobs, *report._listings})
    if keys:
        store.put(uploads_key(job_id), json.dumps({"keys": keys}).encode())


def uploads_of(store: ObjectStore, job_id: str) -> set[str]:
    """The uploaded objects a job references (none recorded: an empty set)."""
    try:
        return set(json.loads(store.get(uploads_key(job_id)))["keys"])
    except (KeyError, ValueError):  # ObjectNotFound is a KeyError
        return set()


def replace(value: Any, convert, kinds: type | tuple = (File, DataRef, remote.UrlRef)) -> Any:
    """value with every File/DataRef/UrlRef inside (lists, tuples, dicts) replaced by convert(it)."""
    if isinstance(value, kinds):
        return convert(value)
    if type(value) in (list, tuple):
        items = [replace(v, convert, kinds) for v in value]
        return type(value)(items)
    if type(value) is dict:
        return {k: replace(v, convert, kinds) for k, v in value.items()}
    return value


# -- task: staging in, outputs out -------------------------------------------------------

_STAGE_ROOT: Path | None = None
#: the folder a task's runner made for its staged inputs and outputs, and removes however the
#: task ends (a warm container's server: its children end with os._exit, or are killed)
STAGE_DIR = protocol.STAGE_DIR


def _stage_root() -> Path:
    """The task's folder for staged inputs and outputs: the one its runner made (STAGE_DIR),
    else one of this process's, removed when the process exits."""
    global _STAGE_ROOT
    given = os.environ.get(STAGE_DIR)
    if given:
        Path(given).mkdir(mode=0o700, parents=True, exist_ok=True)
        return Path(given)
    if _STAGE_ROOT is None:
        _STAGE_ROOT = Path(tempfile.mkdtemp(prefix="spmd-task-"))
        atexit.register(shutil.rmtree, _STAGE_ROOT, True)
    return _STAGE_ROOT


def stage(store: ObjectStore, ref: DataRef | remote.UrlRef) -> str:
    """The local path of ref's content, fetched once per task process.

    A UrlRef: a shared path as it is; else the copy some side fetched already into the
    store's cache (a directory store: host or client fetched it), else fetched here.
    """
    if isinstance(ref, remote.UrlRef):
        return stage_url(store, ref)
    folder = _stage_root() / ref.key.rsplit("/", 1)[-1][:32]
    target = folder / ref.name
    if target.exists():
        return str(target)
    folder.mkdir(parents=True, exist_ok=True)
    if not ref.is_dir:
        store.get_file(ref.key, target)
        return str(target)
    listing = json.loads(store.get(ref.key))
    for rel in [*listing["dirs"], *listing["files"]]:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise DataError(f"the folder listing {ref.key} names {rel!r}, outside its folder; "
                            "the store was tampered with: remove that object and map again",
                            path=rel)
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


def stage_url(store: ObjectStore, ref: remote.UrlRef) -> str:
    if ref.in_place:
        return ref.url.rstrip("/") if ref.is_dir else ref.url
    root = cache_root(store)
    if root is not None:
        found = remote.cached(ref, root)
        if found is not None:
            return str(found)
        try:  # a directory store: fetched once per version for every task that reads it
            return str(remote.fetch(ref, root))
        except OSError as exc:  # a cache mounted read-only, or not this user's to write
            if not isinstance(exc, PermissionError) and exc.errno != errno.EROFS:
                raise
    return str(remote.fetch(ref, _stage_root()))


def cache_root(store: ObjectStore) -> Path | None:
    """Where a directory store keeps fetched inputs; None for a store that is not a directory."""
    local = getattr(store, "path", None)
    return Path(local(remote.CACHE)) if callable(local) else None


def object_url(store_url: str, key: str) -> str:
    """The URL of one object: its store's URL and the key, ``<store url>#<key>``."""
    return f"{store_url}#{key}"


def files_prefix(job_id: str, index: int) -> str:
    """Where the outputs of item index of a job live in the store."""
    return f"jobs/{job_id}/files/{index:06d}/"


class ItemContext:
    """The item a task is running: its outputs folder and where those files go in the store."""

    def __init__(self, store: ObjectStore, job_id: str, index: int,
                 destination: str | None = None, options: dict | None = None,
                 publish_here: bool = True):
        self.store = store
        self.job_id = job_id
        self.index = index
        self.destination = destination  # where the item's files end up, instead of the store
        self.options = options or {}
        self.publish_here = publish_here  # False: into the store; the host publishes them
        self._outputs: Path | None = None

    def outputs(self) -> Path:
        if self._outputs is None:
            self._outputs = Path(tempfile.mkdtemp(prefix=f"spmd-outputs-{self.index}-",
                                                  dir=_stage_root()))
        return self._outputs

    def url(self, relpath: str) -> str:
        if self.destination:
            return remote.join(self.destination, relpath)
        return object_url(self.store.url, files_prefix(self.job_id, self.index) + relpath)

    def collect(self) -> list[str]:
        """Put every file under the outputs folder in the store, or publish them to the item's
        destination; returns their relative paths."""
        if self._outputs is None:
            return []
        if self.destination and self.publish_here:
            urls = remote.publish(self._outputs, self.destination, self.options)
            return [u[len(self.destination.rstrip("/")) + 1:] for u in urls]
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
        from .plugins import open_store
        _STORES[store_url] = open_store(store_url)
    return _STORES[store_url]


def _split(url: str) -> tuple[ObjectStore, str]:
    store_url, sep, key = url.partition("#")
    if not sep or not key:
        raise DataError(f"{url!r} is not an spmd object URL (<store url>#<key>, as "
                        "job.output_urls() and Command results give)", path=url)
    return store_at(store_url), key


def open_url(url: str, **options: Any) -> IO[bytes]:
    """Open an object of a store for reading, by its URL; streamed to a temporary file first.

    Works in the client and in tasks, on any backend (the store comes from the plugin
    registry, with the credentials of wherever this runs), with no provider SDK in user code.
    A plain URL or path (a file published with ``outputs_to``) opens through fsspec, with
    ``options`` as its storage options.
    """
    if "#" not in url and (remote.is_url(url) or os.path.isabs(url)):
        fs, path = remote.open_fs(url, options)
        return fs.open(path, "rb")
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


def download_published(destination: str, options: dict, dest: str | os.PathLike) -> list[Path]:
    """Fetch the files published under destination (an item's ``outputs_to``) into dest."""
    fs, _ = remote.open_fs(destination, options)
    paths = []
    for rel, url in remote.list_files(destination, options).items():
        target = Path(dest) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(fs._strip_protocol(url), str(target))
        paths.append(target)
    return paths


def output_urls(store: ObjectStore, job_id: str, index: int) -> dict[str, str]:
    """The output files of one item: relative path -> object URL."""
    prefix = files_prefix(job_id, index)
    return {key[len(prefix):]: object_url(store.url, key) for key in store.list(prefix)}


# -- data where it lives: what a job records, and the client's staging -------------------------

def stage_for_tasks(store: ObjectStore, report: UploadReport) -> None:
    """Fetch the map's URL inputs into the store's cache, where tasks find them (DataRule
    inputs "client": tasks on a shared filesystem without network of their own), 8 at a time."""
    from concurrent.futures import ThreadPoolExecutor
    root = cache_root(store)
    if root is None:
        raise DataError(f"the store {store.url} is not a directory, so URL inputs cannot be "
                        "staged into it for tasks; this backend's data rule is wrong", path=store.url)
    missing = [ref for ref in report._remote.values()
               if not ref.in_place and remote.cached(ref, root) is None]
    with ThreadPoolExecutor(max(1, min(8, len(missing)))) as pool:
        for ref, _ in zip(missing, pool.map(lambda r: remote.fetch(r, root), missing)):
            report.staged_bytes += ref.size


def job_data(staged: list[tuple[tuple, dict]], url_refs: list, destinations) -> dict:
    """What ``jobs/<id>/data.json`` holds: the URL inputs (with versions), which items read
    which, and each item's destination, for the side that moves bytes and for the report."""
    position = {ref.digest: i for i, ref in enumerate(url_refs)}
    items = {}
    for index, call in enumerate(staged):
        refs = find(call, remote.UrlRef)
        if refs:
            items[str(index)] = sorted({position[r.digest] for r in refs})
    return {"inputs": [r.to_dict() for r in url_refs], "items": items,
            "destinations": destinations.urls if destinations else None,
            "options": destinations.options if destinations else {}}


class JobData:
    """A job's ``data.json``, read: URL inputs per item and destinations (empty when none)."""

    def __init__(self, raw: dict | None):
        raw = raw or {}
        self.inputs = [remote.UrlRef.from_dict(r) for r in raw.get("inputs", [])]
        self.items = {int(k): v for k, v in raw.get("items", {}).items()}
        self.destinations: list[str] | None = raw.get("destinations")
        self.options: dict = raw.get("options", {})

    @classmethod
    def load(cls, store: ObjectStore, job_id: str) -> "JobData":
        from .errors import ObjectNotFound
        from .layout import data_key
        try:
            return cls(store.get_json(data_key(job_id)))
        except ObjectNotFound:
            return cls(None)

    def inputs_of(self, item: int) -> list:
        return [self.inputs[i] for i in self.items.get(item, [])]

    def destination(self, item: int) -> str | None:
        return self.destinations[item] if self.destinations else None
