"""Data where it lives: URLs that fsspec opens, checked on the client, moved by one side.

    client, at map()                         the side the backend's DataRule names
    File("s3://lab/sub-01/", anon=True)
        ──info / find (metadata only)──>     UrlRef(url, options, version, files)
                                             fetch(ref, cache) ──> <cache>/<digest>/sub-01/
                                               (once per version: a lock, a temporary name, a rename)
    outputs_to="s3://out/{index}/"
        ──a probe object, written, removed──> publish(outputs folder, destination)
                                               (each file to a temporary name, then moved;
                                                an object store's put is already atomic)

fsspec and its implementations (s3fs, the HTTP filesystem, gcsfs, adlfs) do every transfer;
this module decides what a reference is, which version it has, and where its bytes go.
A version is what the reuse key of a remote input holds: S3's VersionId or ETag, HTTP's ETag
or Last-Modified, a path's size and modification time.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import DataError

#: the extra that brings a scheme's fsspec implementation
EXTRAS = {"s3": "s3", "s3a": "s3", "http": "http", "https": "http", "gs": "gcs", "gcs": "gcs",
          "az": "azure", "abfs": "azure", "abfss": "azure", "adl": "azure"}
#: options that would carry credentials into the job's stored inputs
SECRET_OPTIONS = frozenset({
    "key", "secret", "token", "password", "aws_access_key_id", "aws_secret_access_key",
    "aws_session_token", "client_secret", "account_key", "sas_token", "connection_string",
    "credentials"})
#: info fields that name an object's version, most specific first
VERSION_FIELDS = ("VersionId", "generation", "ETag", "etag", "md5Hash", "content_md5",
                  "Last-Modified", "LastModified", "last_modified", "updated", "mtime", "modified")
CACHE = "data/urls/"  # where a directory store keeps fetched inputs, by digest
RESOLVE_THREADS = 16  # metadata requests in flight while a map checks its inputs


def protocol_of(url: str) -> str:
    """The scheme of a URL ("s3", "https"), or "file" for a path."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else "file"


def is_url(value: str | os.PathLike) -> bool:
    """Whether value is a URL of some filesystem other than this machine's paths."""
    return isinstance(value, str) and protocol_of(value) != "file"


def check_options(url: str, options: Mapping[str, Any]) -> dict:
    """Options as they may travel with a job: no credentials, JSON-able (they are stored)."""
    secret = sorted(SECRET_OPTIONS & set(options))
    if secret:
        raise DataError(f"spmd.File({url!r}, {', '.join(f'{k}=...' for k in secret)}): credentials "
                        "would be stored with the job's inputs; give them the usual way instead "
                        "(the environment, ~/.aws, a profile= option, or the backend's role)",
                        path=url)
    try:
        json.dumps(dict(options), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise DataError(f"spmd.File({url!r}): options must be plain values (str, number, bool, "
                        f"lists and dicts of them): {exc}", path=url) from None
    return dict(options)


def filesystem_class(url: str) -> type:
    """The fsspec class of url's scheme; DataError naming the extra when it is not installed."""
    import fsspec
    protocol = protocol_of(url)
    try:
        return fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        extra = EXTRAS.get(protocol)
        how = f"pip install 'spmd[{extra}]'" if extra else f"install the fsspec implementation of {protocol}://"
        raise DataError(f"{url}: reading {protocol}:// needs a package that is not installed "
                        f"({exc}); {how}", path=url) from None
    except ValueError:
        raise DataError(f"{url}: unknown scheme {protocol}://; give a path, or a URL of s3://, "
                        "https://, gs://, az:// or another fsspec filesystem", path=url) from None


def open_fs(url: str, options: Mapping[str, Any]):
    """(filesystem, path inside it) for url; DataError when its scheme is unusable."""
    from fsspec.core import url_to_fs
    filesystem_class(url)
    return url_to_fs(url, **options)


# -- references ------------------------------------------------------------------------------

@dataclass(frozen=True)
class UrlRef:
    """What travels in place of a File given by URL (or by a shared path): no bytes, a version.

    ``files`` lists a folder's files (relative path, size) as the client saw them;
    ``in_place`` says the task reads ``url`` as a path where it is (a shared filesystem).
    """

    url: str
    options: tuple[tuple[str, Any], ...]
    name: str
    is_dir: bool
    version: str
    size: int
    files: tuple[tuple[str, int], ...] = ()
    in_place: bool = False

    @property
    def digest(self) -> str:
        """A name for this version of this URL (and its options), for caches."""
        token = json.dumps([self.url, list(self.options), self.version], sort_keys=True)
        return hashlib.sha256(token.encode()).hexdigest()[:32]

    @property
    def storage_options(self) -> dict:
        return dict(self.options)

    def to_dict(self) -> dict:
        return {"url": self.url, "options": dict(self.options), "name": self.name,
                "is_dir": self.is_dir, "version": self.version, "size": self.size,
                "files": [list(f) for f in self.files], "in_place": self.in_place}

    @classmethod
    def from_dict(cls, raw: dict) -> "UrlRef":
        return cls(url=raw["url"], options=tuple(sorted(raw["options"].items())), name=raw["name"],
                   is_dir=raw["is_dir"], version=raw["version"], size=raw["size"],
                   files=tuple((rel, size) for rel, size in raw["files"]),
                   in_place=raw.get("in_place", False))


def version_of(info: Mapping[str, Any]) -> str:
    """An object's version from its fsspec info: the first version field it has, and its size."""
    for name in VERSION_FIELDS:
        value = info.get(name)
        if value not in (None, ""):
            return f"{name}={str(value).strip(chr(34))};size={info.get('size')}"
    return f"size={info.get('size')}"


def _base_name(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) or path.strip("/")


def resolve(url: str, options: Mapping[str, Any], *, in_place: bool = False) -> UrlRef:
    """The UrlRef of url: one metadata request (a HEAD), or a listing for a folder.

    DataError naming the URL when it does not exist or cannot be read with these credentials.
    """
    fs, path = open_fs(url, options)
    fs.invalidate_cache()  # fsspec instances are shared: a listing cached earlier is stale
    try:
        info = None if url.endswith("/") else fs.info(path)
        if info is not None and info.get("type") != "directory":
            return UrlRef(url=url, options=tuple(sorted(options.items())), name=_base_name(path),
                          is_dir=False, version=version_of(info), size=int(info.get("size") or 0),
                          in_place=in_place)
        found = fs.find(path, detail=True, withdirs=False)
    except FileNotFoundError:
        raise DataError(f"{url}: no such object or folder; check the URL (and anon=, region "
                        "or endpoint_url options)", path=url) from None
    except PermissionError as exc:
        raise DataError(f"{url}: cannot be read with these credentials ({exc}); check the "
                        "credentials, or pass anon=True for a public bucket", path=url) from None
    except OSError as exc:
        raise DataError(f"{url}: cannot be read: {type(exc).__name__}: {exc}", path=url) from None
    except Exception as exc:  # a provider's own error class (botocore's, aiohttp's)
        raise DataError(f"{url}: cannot be read: {type(exc).__name__}: {exc}", path=url) from None
    root = fs._strip_protocol(path).rstrip("/")
    files, versions, total = [], [], 0
    for name, entry in sorted(found.items()):
        rel = name[len(root):].lstrip("/") if name.startswith(root) else _base_name(name)
        if not rel or rel.endswith("/"):
            continue  # a folder marker object
        size = int(entry.get("size") or 0)
        files.append((rel, size))
        versions.append([rel, version_of(entry)])
        total += size
    if not files:
        raise DataError(f"{url}: no such object or folder (nothing is listed under it); check "
                        "the URL", path=url)
    version = "tree=" + hashlib.sha256(json.dumps(versions).encode()).hexdigest()
    return UrlRef(url=url if url.endswith("/") else url + "/", options=tuple(sorted(options.items())),
                  name=_base_name(path), is_dir=True, version=version, size=total,
                  files=tuple(files), in_place=in_place)


def resolve_many(wanted: Iterable[tuple[str, tuple, bool]]) -> dict[tuple[str, tuple, bool], UrlRef]:
    """UrlRefs of many (url, options, in_place), their metadata requests in parallel."""
    wanted = list(dict.fromkeys(wanted))
    if not wanted:
        return {}
    with ThreadPoolExecutor(min(RESOLVE_THREADS, len(wanted))) as pool:
        refs = list(pool.map(lambda w: resolve(w[0], dict(w[1]), in_place=w[2]), wanted))
    return dict(zip(wanted, refs))


# -- moving bytes: fetch in, publish out ---------------------------------------------------------

def _source(ref: UrlRef, rel: str = "") -> str:
    return ref.url + rel if ref.is_dir else ref.url


def fetch(ref: UrlRef, root: str | os.PathLike) -> Path:
    """ref's bytes at ``root/<digest>/<name>``, fetched once per version by any process.

    A lock per digest keeps concurrent fetchers to one transfer; the copy is made under a
    temporary name and renamed, so a half-fetched input is never seen.
    """
    import fasteners
    folder = Path(root) / ref.digest
    target = folder / ref.name
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with fasteners.InterProcessLock(str(folder / ".lock")):
        if target.exists():
            return target
        partial = folder / f".partial-{uuid.uuid4().hex}"
        fs, _ = open_fs(ref.url, ref.storage_options)
        try:
            if ref.is_dir:
                partial.mkdir()
                for rel, _ in ref.files:
                    (partial / rel).parent.mkdir(parents=True, exist_ok=True)
                    fs.get_file(_strip(fs, _source(ref, rel)), str(partial / rel))
            else:
                fs.get_file(_strip(fs, ref.url), str(partial))
            os.rename(partial, target)
        except FileNotFoundError:
            raise DataError(f"{ref.url}: gone since the map checked it (version {ref.version})",
                            path=ref.url) from None
        finally:
            if partial.exists():
                shutil.rmtree(partial, ignore_errors=True) if partial.is_dir() else partial.unlink()
    return target


def cached(ref: UrlRef, root: str | os.PathLike) -> Path | None:
    """ref's fetched copy under root, if some side fetched it already."""
    target = Path(root) / ref.digest / ref.name
    return target if target.exists() else None


def _strip(fs, url: str) -> str:
    return fs._strip_protocol(url)


def _is_local(fs) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def publish(folder: str | os.PathLike, destination: str, options: Mapping[str, Any]) -> list[str]:
    """Copy every file under folder to destination (a folder URL or path); returns the URLs.

    On a filesystem with renames each file is written under a temporary name and moved into
    place; on an object store a put is atomic already. A retry overwrites files of the same
    names, so a reader never sees half of one.
    """
    fs, base = open_fs(destination, options)
    base = base.rstrip("/")
    local = _is_local(fs)
    urls = []
    for dirpath, _, filenames in sorted(os.walk(folder)):
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if not full.is_file():
                continue
            rel = full.relative_to(folder).as_posix()
            target = f"{base}/{rel}"
            if local:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                partial = f"{posixpath.dirname(target)}/.spmd-partial-{uuid.uuid4().hex}"
                shutil.copyfile(full, partial)
                os.replace(partial, target)
            else:
                fs.put_file(str(full), target)
            urls.append(join(destination, rel))
    return urls


def join(folder_url: str, rel: str) -> str:
    return folder_url.rstrip("/") + "/" + rel


def list_files(destination: str, options: Mapping[str, Any]) -> dict[str, str]:
    """The files published under destination: relative path -> URL (none: an empty dict)."""
    fs, base = open_fs(destination, options)
    root = fs._strip_protocol(base).rstrip("/")
    fs.invalidate_cache()
    try:
        found = fs.find(root, withdirs=False)
    except FileNotFoundError:
        return {}
    out = {}
    for name in sorted(found):
        rel = name[len(root):].lstrip("/")
        if rel and not posixpath.basename(rel).startswith(".spmd-partial-"):
            out[rel] = join(destination, rel)
    return out


def check_writable(destination: str, options: Mapping[str, Any]) -> None:
    """Write and remove a probe object under destination; DataError naming it when refused."""
    fs, base = open_fs(destination, options)
    probe = f"{base.rstrip('/')}/.spmd-write-check-{uuid.uuid4().hex}"
    try:
        if _is_local(fs):
            Path(base).mkdir(parents=True, exist_ok=True)
        fs.pipe_file(probe, b"")
    except Exception as exc:
        raise DataError(f"outputs_to={destination!r}: cannot write there with these credentials "
                        f"({type(exc).__name__}: {exc}); choose a destination you may write, or "
                        "fix its permissions", path=destination) from None
    try:
        fs.rm_file(probe)
    except Exception:  # written is what matters; a role may put without deleting
        pass
