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


def open_path(url: str | os.PathLike[str]) -> tuple[AbstractFileSystem, str]:
    """Return ``(filesystem, path)`` for a file URL or local path (made absolute)."""
    fs, path = fsspec.core.url_to_fs(os.fspath(url))
    return fs, os.path.abspath(path) if is_local(fs) else path


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


def is_local(fs: AbstractFileSystem) -> bool:
    """True for the local filesystem (paths are plain OS paths)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


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
    try:
        modified = fs.modified(path).timestamp()
    except (OSError, NotImplementedError, ValueError):
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
    fs.makedirs(parent, exist_ok=True)
    sweep_stale_temporaries(fs, parent)
    tmp = join(parent, temporary_name(name))
    fs.makedirs(tmp, exist_ok=True)
    try:
        yield tmp
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


def probe_writable(url: str) -> None:
    """Create the store folder ``url`` and write and delete a small file there (OSError if not possible)."""
    fs, root = open_store(url)
    fs.makedirs(root, exist_ok=True)
    probe = join(root, f".write-probe-{uuid.uuid4().hex[:12]}")
    with fs.open(probe, "wb") as f:
        f.write(b"ok")
    fs.rm(probe)


def atomic_write_text(fs: AbstractFileSystem, path: str, text: str) -> None:
    """Replace the small file ``path`` atomically (write a temp sibling, then rename)."""
    parent = posixpath.dirname(path)
    fs.makedirs(parent, exist_ok=True)
    sweep_stale_temporaries(fs, parent)
    tmp = join(parent, temporary_name(posixpath.basename(path)))
    with fs.open(tmp, "w") as f:
        f.write(text)
    if is_local(fs):
        os.replace(tmp, path)
    else:
        fs.mv(tmp, path)
