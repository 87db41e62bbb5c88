"""Filesystem plumbing for the store: fsspec URLs, JSON files, atomic folders.

A store is a root URL (a local path or any fsspec URL such as ``s3://bucket/ff``).
Everything that is published (a dataset snapshot, a split, a partition set, a
model version) is written into a temporary sibling folder and renamed into
place last, so a reader never sees a half-written folder. A failure removes the
temporary folder; a killed writer cannot, so every atomic write first sweeps its
parent folder of *stale* temporaries (:func:`sweep_stale_temporaries`): those whose
writer, named in the temporary's name as ``HOST-PID``, is a process of this host that
no longer runs, and any older than :data:`STALE_TMP_S` (a writer on another host, or an
old-style name). A live writer's temporary is never touched.

**Object stores** (``s3://``, ``gs://``, ``abfs://``...: :func:`is_object_store`) have no
folders and no rename. Here a "folder" is a key prefix, so :func:`makedirs` does nothing (s3fs
would otherwise *create a missing bucket*), and :func:`atomic_dir` copies the temporary's files
to the final prefix object by object, **the ``.json`` files last** — every folder's completion
marker is its JSON manifest (``manifest.json``, ``partitions.json``, ``model.json``), written
last, and every reader checks it — then deletes the temporary. A reader therefore never sees a
half-copied folder as complete; a writer killed mid-copy leaves data objects without a marker,
which readers ignore and the next writer of that folder overwrites. A single object PUT is
atomic, so :func:`atomic_write_text` (``CURRENT``) writes the object directly. Listings are
never cached (``use_listings_cache=False``): another process (a Dask worker, a second CLI) may
have written since. Endpoint and credentials come from the environment (``FSSPEC_S3_*``,
``AWS_*``; see ARCHITECTURE.md "Remote stores").
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
from fsspec import AbstractFileSystem

from factorflow.errors import ParameterError

#: Protocols of object stores: key prefixes instead of folders, no rename (module docstring).
OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oss"})


def open_path(url: str | os.PathLike[str]) -> tuple[AbstractFileSystem, str]:
    """Return ``(filesystem, path)`` for a file URL or local path (made absolute).

    An object store's listings are not cached: another process may have written since.
    """
    url = os.fspath(url)
    protocol = fsspec.core.split_protocol(url)[0]
    options = {"use_listings_cache": False} if protocol in OBJECT_STORE_PROTOCOLS else {}
    fs, path = fsspec.core.url_to_fs(url, **options)
    if is_object_store(fs):
        check_object_store(fs, path, url)
    return fs, os.path.abspath(path) if is_local(fs) else path


class StoreAccessError(OSError):
    """The object store behind a URL cannot be used (missing bucket, refused credentials,
    unreachable endpoint). The message is one line naming the URL and what to do."""


_checked_buckets: set[tuple[object, str]] = set()


def check_object_store(fs: AbstractFileSystem, path: str, url: str) -> None:
    """``StoreAccessError`` unless ``path``'s bucket exists and answers with these credentials.

    Checked once per process and bucket (one listing of ``path``; a HEAD of the bucket when the
    prefix is still empty), so the first store access of a CLI command or a Dask worker fails
    with one clear line instead of a botocore traceback deep inside a step.
    """
    bucket = path.strip("/").split("/", 1)[0]
    key = (getattr(fs, "_fs_token", None) or id(fs), bucket)
    if key in _checked_buckets:
        return
    try:
        try:
            fs.ls(path, detail=False)
        except FileNotFoundError:
            try:
                fs.info(bucket)
            except FileNotFoundError:
                raise StoreAccessError(
                    f"{url}: bucket {bucket!r} does not exist{_at(fs)}; create it first "
                    f"(e.g. `aws s3 mb {_protocols(fs)[0]}://{bucket}`) or fix the store URL") from None
            except PermissionError:
                pass  # a new prefix, and HEAD of the bucket is not allowed: the writes will tell
    except PermissionError as exc:
        raise StoreAccessError(
            f"{url}: access denied{_at(fs)} ({_first_line(exc)}); {_credentials_hint(fs)}") from None
    except StoreAccessError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore's connection errors are not OSErrors
        raise StoreAccessError(
            f"{url}: cannot reach the object store{_at(fs)} ({_first_line(exc)}); check the endpoint "
            "(AWS_ENDPOINT_URL or FSSPEC_S3_ENDPOINT_URL for an S3-compatible server) and the network") from None
    _checked_buckets.add(key)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _at(fs: AbstractFileSystem) -> str:
    endpoint = (getattr(fs, "endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL_S3")
                or os.environ.get("AWS_ENDPOINT_URL")) if "s3" in _protocols(fs) else None
    return f" at {endpoint}" if endpoint else ""


def _credentials_hint(fs: AbstractFileSystem) -> str:
    if "s3" in _protocols(fs):
        return ("set credentials that may read and write it (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or AWS_PROFILE) and, for an S3-compatible server, its endpoint (AWS_ENDPOINT_URL)")
    return f"check the credentials of the {_protocols(fs)[0]} filesystem (see its fsspec documentation)"


def open_store(url: str | os.PathLike[str]) -> tuple[AbstractFileSystem, str]:
    """Return ``(filesystem, root path)`` for a store folder URL or local path (made absolute).

    Raises ParameterError when a local store path is, or lies below, an existing file.
    """
    url = os.fspath(url)
    fs, root = open_path(url)
    if is_local(fs):
        existing = root
        while not os.path.exists(existing) and existing != os.path.dirname(existing):
            existing = os.path.dirname(existing)
        if os.path.isfile(existing):  # nothing can ever be created in or below a file
            raise ParameterError(f"{url}: {existing} is a file, not a folder; choose another path")
    return fs, root.rstrip("/") or "/"


def store_url(store: str | os.PathLike[str]) -> str:
    """The store's root as the canonical URL (absolute path when local) that reports show."""
    fs, root = open_store(store)
    return url_of(fs, root)


def url_of(fs: AbstractFileSystem, path: str) -> str:
    """``path`` on ``fs`` as a URL that :func:`open_store` maps back (plain path when local)."""
    return path if is_local(fs) else fs.unstrip_protocol(path)


def _protocols(fs: AbstractFileSystem) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def is_local(fs: AbstractFileSystem) -> bool:
    """True for the local filesystem (paths are plain OS paths)."""
    return _protocols(fs)[0] in ("file", "local")


def is_object_store(fs: AbstractFileSystem) -> bool:
    """True for an object store (S3, GCS, Azure...): no real folders, no rename."""
    return any(p in OBJECT_STORE_PROTOCOLS for p in _protocols(fs))


def makedirs(fs: AbstractFileSystem, path: str) -> None:
    """Make folder ``path`` and its parents (nothing to make on an object store: never a bucket)."""
    if not is_object_store(fs):
        fs.makedirs(path, exist_ok=True)


def modified_time(fs: AbstractFileSystem, path: str) -> float | None:
    """Last modification (epoch seconds) of a file or folder; for a folder of an object store the
    newest object under its prefix. None when unknown."""
    try:
        return fs.modified(path).timestamp()
    except (OSError, NotImplementedError, ValueError):
        if not is_object_store(fs):
            return None
    try:
        found = fs.find(path, detail=True)
    except OSError:
        return None
    stamps = [info.get("LastModified") or info.get("mtime") or info.get("updated") for info in found.values()]
    stamps = [s.timestamp() if hasattr(s, "timestamp") else float(s) for s in stamps if s]
    return max(stamps, default=None)


def join(*parts: str) -> str:
    """Join path parts with ``/`` (fsspec paths are posix-style everywhere)."""
    return posixpath.join(*parts)


def write_json(fs: AbstractFileSystem, path: str, obj: Any) -> None:
    """Write ``obj`` as pretty, key-sorted JSON."""
    with fs.open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")


def read_json(fs: AbstractFileSystem, path: str) -> Any:
    with fs.open(path, "r") as f:
        return json.load(f)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


STALE_TMP_S = 24 * 3600.0  # a temporary this old is stale whoever wrote it
_TMP_RE = re.compile(r"^\.tmp-.*-(?P<host>[A-Za-z0-9.-]+)-p(?P<pid>\d+)-[0-9a-f]{12}$")


def host_name() -> str:
    """This host's name as it appears in temporary names and run owner files."""
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:64] or "host"


def temporary_name(name: str) -> str:
    """``.tmp-NAME-HOST-pPID-RANDOM``: unique, and names its writer for the stale sweep."""
    return f".tmp-{name}-{host_name()}-p{os.getpid()}-{uuid.uuid4().hex[:12]}"


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _is_stale(fs: AbstractFileSystem, path: str, now: float) -> bool:
    m = _TMP_RE.match(posixpath.basename(path.rstrip("/")))
    if m and m["host"] == host_name() and int(m["pid"]) != os.getpid() and not pid_alive(int(m["pid"])):
        return True
    modified = modified_time(fs, path)
    if modified is None:
        return False  # unknown age: keep it
    return now - modified > STALE_TMP_S  # also a reused pid's, or another host's


def sweep_stale_temporaries(fs: AbstractFileSystem, parent: str) -> list[str]:
    """Remove the stale ``.tmp-*`` entries of folder ``parent`` (see the module docstring); return them."""
    try:
        entries = fs.ls(parent, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed, now = [], time.time()
    for path in entries:
        if posixpath.basename(path.rstrip("/")).startswith(".tmp-") and _is_stale(fs, path, now):
            try:
                fs.rm(path, recursive=True)
            except FileNotFoundError:  # another sweeper was first
                continue
            removed.append(path)
    return removed


@contextmanager
def atomic_dir(fs: AbstractFileSystem, final_path: str) -> Iterator[str]:
    """Yield a temporary folder beside ``final_path``; rename it into place on success.

    On any exception the temporary folder is removed and ``final_path`` is untouched.
    Raises ``FileExistsError`` if ``final_path`` appeared meanwhile (a concurrent writer
    won): the caller decides whether that is fine (content-addressed) or an error.
    """
    parent, name = posixpath.split(final_path.rstrip("/"))
    makedirs(fs, parent)
    sweep_stale_temporaries(fs, parent)
    tmp = join(parent, temporary_name(name))
    makedirs(fs, tmp)
    try:
        yield tmp
        if is_object_store(fs):
            _copy_into_place(fs, tmp, final_path)
        else:
            if fs.exists(final_path):
                raise FileExistsError(final_path)
            if is_local(fs):
                os.rename(tmp, final_path)  # atomic on POSIX
            else:
                fs.mv(tmp, final_path, recursive=True)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp, recursive=True)
        raise


def _copy_into_place(fs: AbstractFileSystem, tmp: str, final_path: str) -> None:
    """The object-store "rename" of :func:`atomic_dir`: copy every object of ``tmp`` to
    ``final_path`` (server side), the ``.json`` completion markers last, then delete ``tmp``.

    ``FileExistsError`` when ``final_path`` already has one of the markers (a complete folder);
    objects there without a marker (a writer killed mid-copy) are overwritten.
    """
    names = sorted(posixpath.relpath(p, tmp) for p in fs.find(tmp))
    markers = [n for n in names if n.endswith(".json")]
    data = [n for n in names if not n.endswith(".json")]
    if any(fs.exists(join(final_path, n)) for n in markers or names):
        raise FileExistsError(final_path)
    for n in data + markers:
        fs.cp_file(join(tmp, n), join(final_path, n))
    if names:  # an empty prefix does not exist
        fs.rm(tmp, recursive=True)


def probe_writable(url: str) -> None:
    """Create the store folder ``url`` and write and delete a small file there (OSError if not possible).

    On an object store nothing is created but the probe object: a missing bucket is an error.
    """
    fs, root = open_store(url)
    makedirs(fs, root)
    probe = join(root, f".write-probe-{uuid.uuid4().hex[:12]}")
    try:
        with fs.open(probe, "wb") as f:
            f.write(b"ok")
        fs.rm(probe)
    except PermissionError as exc:
        if not is_object_store(fs):
            raise
        raise StoreAccessError(f"{url}: cannot write there{_at(fs)} ({_first_line(exc)}); "
                               f"{_credentials_hint(fs)}") from None


def atomic_write_text(fs: AbstractFileSystem, path: str, text: str) -> None:
    """Replace the small file ``path`` atomically (write a temp sibling, then rename; on an object
    store one PUT, which is atomic)."""
    if is_object_store(fs):
        fs.pipe_file(path, text.encode())
        return
    parent = posixpath.dirname(path)
    makedirs(fs, parent)
    sweep_stale_temporaries(fs, parent)
    tmp = join(parent, temporary_name(posixpath.basename(path)))
    with fs.open(tmp, "w") as f:
        f.write(text)
    replace_file(fs, tmp, path)


def replace_file(fs: AbstractFileSystem, tmp: str, path: str) -> None:
    """Move the finished file ``tmp`` onto ``path`` (atomic rename; on an object store copy + delete:
    the object ``path`` appears whole)."""
    if is_local(fs):
        os.replace(tmp, path)
    elif is_object_store(fs):
        fs.cp_file(tmp, path)
        fs.rm(tmp)
    else:
        fs.mv(tmp, path)
