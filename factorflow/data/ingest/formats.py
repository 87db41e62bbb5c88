"""Ratings file formats: open (decompressing gzip/zip), hash, and detect the layout.

A :class:`FormatSpec` says how pyarrow should read the file (delimiter, header or given
column names) and which columns hold user, item, rating and (optionally) timestamp.
Detection looks at the first bytes after decompression; ``--format`` overrides it.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import re
import stat
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import IO, Any

import fsspec
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from factorflow.errors import InputError, ParameterError
from factorflow.progress import Progress, report

FORMATS = ("movielens-csv", "ml100k", "ml1m", "delimited")
ROLES = ("user", "item", "rating", "timestamp")
SAMPLE_BYTES = 64 * 1024
_ML_CSV_HEADER = {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}
_CANDIDATE_DELIMITERS = (",", "\t", ";", "|", ":", " ")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True)
class FormatSpec:
    """How to read one file. ``roles`` maps user/item/rating[/timestamp] to pyarrow column names.

    ``column_names`` is None when the first line is a header, else the names given to pyarrow.
    ``separators`` are columns that must be empty (the gaps of ML-1M's ``::``).
    """

    name: str
    delimiter: str
    roles: dict[str, str]
    column_names: list[str] | None = None
    header: list[str] | None = None
    separators: list[str] = field(default_factory=list)
    skip_lines: int = 0  # blank lines before the first line (header or data)

    @property
    def has_timestamp(self) -> bool:
        return "timestamp" in self.roles

    @property
    def first_data_line(self) -> int:
        return self.skip_lines + (2 if self.column_names is None else 1)


# ---------------------------------------------------------------- opening and hashing


def source_size_and_hash(source: str, chunk: int = 8 << 20, stop: threading.Event | None = None) -> tuple[int, str]:
    """``(bytes, sha256 hex)`` of the raw (still compressed) bytes of ``source``.

    With ``stop``: once it is set, return at the next chunk (with a partial, meaningless hash).
    Reads into one reused buffer where the file allows (a new 8 MiB object per chunk costs a
    page fault per 4 KiB: ~0.2 s of system time for a 500 MB file).
    """
    h = hashlib.sha256()
    n = 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    try:
        with fsspec.open(source, "rb") as f:
            readinto = getattr(f, "readinto", None)
            while stop is None or not stop.is_set():
                if readinto is not None:
                    k = readinto(view)
                    b = view[:k] if k else b""
                else:
                    b = f.read(chunk)
                if not b:
                    break
                h.update(b)
                n += len(b)
    except FileNotFoundError:
        raise InputError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{source}: is a folder, not a ratings file") from None
    return n, h.hexdigest()


def local_size(source: str) -> int | None:
    """The size of a local regular file ``source``; None for anything else (or an error)."""
    path = _local_path(source)
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


class _Counting(io.RawIOBase):
    """A read-only stream that counts the bytes read from the underlying (compressed) file."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.count += n
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data


class _Text(io.RawIOBase):
    """The decompressed byte stream handed to pyarrow; ``raw_count`` = compressed bytes read."""

    def __init__(self, stream: IO[bytes], raw_count: Any) -> None:
        self._stream = stream
        self._raw_count = raw_count

    @property
    def raw_count(self) -> int:
        """Bytes of the source file (compressed, as stored) consumed so far."""
        return int(self._raw_count())

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def readinto(self, b: Any) -> int:
        data = self._stream.read(len(b))
        b[: len(data)] = data
        return len(data)


@contextmanager
def open_text(source: str) -> Iterator[_Text]:
    """Open ``source`` (path or fsspec URL) as a decompressed byte stream (gzip / single-member zip)."""
    try:
        raw_cm = fsspec.open(source, "rb")
        raw = raw_cm.open()
    except FileNotFoundError:
        raise InputError(f"{source}: file not found") from None
    try:
        counter = _Counting(raw)
        buffered = io.BufferedReader(counter, buffer_size=1 << 20)
        magic = buffered.peek(4)[:4]
        if magic[:2] == b"\x1f\x8b":
            yield _Text(gzip.GzipFile(fileobj=buffered, mode="rb"), lambda: counter.count)
        elif magic in _ZIP_MAGIC:  # zip needs seeking: read the member from the raw file
            yield _Text(_open_zip_member(source, raw), raw.tell)
        else:
            yield _Text(buffered, lambda: counter.count)
    finally:
        raw.close()


def _open_zip_member(source: str, raw: IO[bytes]) -> IO[bytes]:
    raw.seek(0)
    try:
        zf = zipfile.ZipFile(raw)
    except zipfile.BadZipFile as exc:
        raise InputError(f"{source}: not a readable zip file ({exc})") from None
    members = [m for m in zf.infolist() if not m.is_dir()]
    if len(members) != 1:
        names = ", ".join(m.filename for m in members[:5]) or "none"
        raise InputError(f"{source}: zip has {len(members)} files ({names}); expected exactly one ratings file")
    return zf.open(members[0])


@dataclass(frozen=True)
class ArrowInput:
    """A local file pyarrow reads natively (``compression`` "gzip" or None); ``staged``: a temporary
    decompressed copy of a zip member or remote file, whose size says nothing about the source's."""

    path: str
    compression: str | None
    staged: bool

    def plain_size(self) -> int | None:
        """Bytes of the text pyarrow will parse when known up front (not for gzip)."""
        if self.compression:
            return None
        try:
            return os.path.getsize(self.path)
        except OSError:
            return None

    def open(self) -> tuple[pa.NativeFile, Callable[[], int] | None]:
        """``(stream, bytes_of_the_source_read_so_far or None)``."""
        raw = pa.OSFile(self.path, "rb")
        stream = pa.CompressedInputStream(raw, self.compression) if self.compression else raw
        return stream, None if self.staged else raw.tell


def _local_path(source: str) -> str | None:
    try:
        fs, path = fsspec.core.url_to_fs(source)
    except (ValueError, ImportError):
        return None
    return path if isinstance(fs, LocalFileSystem) else None


@contextmanager
def arrow_input(source: str, progress: Progress | None = None, total: int | None = None) -> Iterator[ArrowInput]:
    """What pyarrow should parse for ``source``: never a Python file object.

    Arrow keeps the Python buffers it reads through a Python file and may drop them from a pool
    thread after the read returned; during interpreter exit that aborts the process
    ("terminate called without an active exception", exit 134), e.g. after a one-line error
    on a truncated gzip. So a local plain or gzip file is read natively, and a zip member or a
    remote file is first decompressed into a local temporary file (removed afterwards).
    """
    local = _local_path(source)
    if local is not None:
        try:
            with open(local, "rb") as f:
                magic = f.read(4)
        except FileNotFoundError:
            raise InputError(f"{source}: file not found") from None
        if magic not in _ZIP_MAGIC:
            yield ArrowInput(local, "gzip" if magic[:2] == b"\x1f\x8b" else None, staged=False)
            return
    fd, tmp = tempfile.mkstemp(prefix="factorflow-ingest-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as out, open_text(source) as f:
            while True:
                try:
                    chunk = f.read(8 << 20)
                except (OSError, EOFError, zipfile.BadZipFile) as exc:
                    raise InputError(f"{source}: cannot read or decompress ({exc})") from None
                if not chunk:
                    break
                out.write(chunk)
                report(progress, f.raw_count, total, source)
        yield ArrowInput(tmp, None, staged=True)
    finally:
        os.unlink(tmp)


def read_sample(source: str) -> bytes:
    """The first ``SAMPLE_BYTES`` of the decompressed content (gzip/zip errors become InputError)."""
    with open_text(source) as f:
        try:
            return f.read(SAMPLE_BYTES)
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"{source}: cannot decompress ({exc})") from None


# ---------------------------------------------------------------- detection


def not_utf8_error(source: str, line: int, byte: int) -> InputError:
    """The one-line error for text that is not UTF-8, naming the line and the byte."""
    return InputError(
        f"{source}: line {line}: not UTF-8 text (byte 0x{byte:02x}); re-encode the file as UTF-8, "
        "e.g. iconv -f latin1 -t utf-8 (or from the encoding it is in)"
    )


def _looks_utf16(sample: bytes) -> bool:
    """Mostly-ASCII text in UTF-16 (with or without a byte-order mark): every other byte is NUL."""
    head = sample[2:514] if sample[:2] in _UTF16_BOMS else sample[:512]
    half = len(head) // 2
    return half >= 4 and max(head[0::2].count(0), head[1::2].count(0)) > 0.8 * half


def _first_line(source: str, sample: bytes) -> tuple[str, int]:
    """The first non-blank line of the sample, and how many lines come before it."""
    if not sample.strip():
        raise InputError(f"{source}: empty file (no rows)")
    if _looks_utf16(sample):
        raise InputError(f"{source}: looks like UTF-16 text; re-encode the file as UTF-8, "
                         "e.g. iconv -f utf-16 -t utf-8")
    if b"\x00" in sample:
        raise InputError(f"{source}: looks like binary data, not a text ratings file "
                         f"(NUL bytes in the first {len(sample)} bytes)")
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # not just a character cut at the sample's end
            if _mostly_ascii_text(sample):
                raise not_utf8_error(source, _line_at(sample, exc.start), sample[exc.start]) from None
            raise InputError(
                f"{source}: looks like binary data, not a UTF-8 text ratings file (invalid byte at offset {exc.start})"
            ) from None
        text = sample[: exc.start].decode("utf-8")
    text = text.lstrip("\ufeff")
    bad = sum(1 for c in text if not (c.isprintable() or c in "\r\n\t"))
    if bad > max(4, len(text) // 100):
        raise InputError(f"{source}: looks like binary data, not a text ratings file "
                         f"({bad} control characters in the first {len(text)})")
    for k, line in enumerate(re.split(r"\r\n|\r|\n", text)):  # line ends as pyarrow sees them
        if line.strip():
            return line, k
    raise InputError(f"{source}: empty file (no rows)")  # pragma: no cover - caught by strip() above


def _mostly_ascii_text(sample: bytes) -> bool:
    """Printable ASCII and line breaks for ≥ 95% of the bytes: text in some 8-bit encoding."""
    ascii_text = sum(1 for b in sample if 32 <= b < 127 or b in (9, 10, 13))
    return ascii_text >= 0.95 * len(sample)


def _line_at(data: bytes, offset: int) -> int:
    """1-based line of byte ``offset`` (line ends: \\n, \\r\\n or a lone \\r)."""
    head = data[:offset]
    return head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n") + 1


def _split(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter)) if len(delimiter) == 1 else line.split(delimiter)


def _likely_delimiter(line: str) -> str | None:
    counts = {d: line.count(d) for d in _CANDIDATE_DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else None


def _delim_hint(line: str, used: str) -> str:
    d = _likely_delimiter(line)
    if d is not None and d != used:
        return (f"; the line looks {d!r}-separated (wrong delimiter? try --format delimited --delimiter {d!r} "
                f"--columns {_columns_hint(_split(line, d))})")
    return ""


def _columns_hint(fields: list[str]) -> str:
    """A ``--columns`` value for a first line: its MovieLens-like names, or positions for 3-4 numbers."""
    lower = [f.strip().lower() for f in fields]
    if {"userid", "movieid", "rating"} <= set(lower):
        return ",".join(f"{r}={fields[lower.index(c.lower())].strip()}" for r, c in _ML_CSV_HEADER.items()
                        if c.lower() in lower)
    if 3 <= len(fields) <= 4 and all(_is_number(f) for f in fields):
        return ",".join(f"{r}={k + 1}" for k, r in enumerate(ROLES[: len(fields)]))
    return "user=..,item=..,rating=.."


def _undetected(at: str, line: str) -> InputError:
    """The error for a first line that matches no format, with the likeliest fix."""
    if line.lstrip().startswith("<"):
        hint = "; it looks like HTML or XML, not a ratings file (a web page saved instead of the data?)"
    elif _likely_delimiter(line) == ",":
        hint = f"; for a file without a header try --format delimited --columns {_columns_hint(_split(line, ','))}"
    else:
        hint = _delim_hint(line, ",")
    return InputError(
        f"{at} {line[:80]!r}: cannot detect the format; pass --format "
        "(movielens-csv, ml100k, ml1m, or delimited with --columns user=..,item=..,rating=..[,timestamp=..])" + hint
    )


def _check_unique(at: str, header: list[str], roles: dict[str, str]) -> None:
    """``InputError`` when the header has a column that a role reads more than once."""
    names = [c.strip() for c in header]
    twice = sorted({c.strip() for c in roles.values() if names.count(c.strip()) > 1})
    if twice:
        raise InputError(
            f"{at}: header {header[:8]} names column(s) {', '.join(twice)} more than once; "
            "rename them, or give positions with --format delimited --columns user=1,item=2,rating=3"
        )


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def parse_columns(text: str | dict[str, str] | None) -> dict[str, str] | None:
    """``"user=u,item=i,rating=r[,timestamp=t]"`` (or a dict) → validated role → column map."""
    if text is None:
        return None
    if isinstance(text, str):
        mapping: dict[str, str] = {}
        for part in text.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not value.strip():
                raise ParameterError(f"--columns={text!r}: must be ROLE=COLUMN pairs, "
                                     "e.g. user=userId,item=movieId,rating=rating")
            mapping[key.strip()] = value.strip()
    else:
        mapping = dict(text)
    unknown = sorted(set(mapping) - set(ROLES))
    missing = [r for r in ROLES[:3] if r not in mapping]
    if unknown or missing:
        raise ParameterError(
            f"--columns={mapping!r}: must map user, item and rating (timestamp optional)"
            + (f"; unknown roles {unknown}" if unknown else "")
            + (f"; missing {missing}" if missing else "")
        )
    return mapping


def detect_format(
    source: str,
    sample: bytes,
    fmt: str | None = None,
    columns: dict[str, str] | None = None,
    delimiter: str | None = None,
) -> FormatSpec:
    """Pick the format from the first line (or honour ``fmt``); check header/columns/delimiter.

    Raises ``InputError`` for an empty or binary file, a missing header column, or a first line
    that does not split into the expected columns (usually a wrong delimiter).
    """
    if fmt is not None and fmt not in FORMATS:
        raise ParameterError(f"--format={fmt!r}: must be one of {', '.join(FORMATS)}")
    line, skip = _first_line(source, sample)
    at = f"{source}: line {skip + 1}"
    return replace(_detect(at, line, fmt, columns, delimiter), skip_lines=skip)


def _detect(at: str, line: str, fmt: str | None, columns: dict[str, str] | None, delimiter: str | None) -> FormatSpec:
    """``detect_format`` on the first non-blank ``line``; ``at`` ("FILE: line N") starts its errors."""
    if fmt is None:
        if columns is not None:
            fmt = "delimited"
        elif "::" in line:
            fmt = "ml1m"
        elif len({"userid", "movieid", "rating"} & {c.strip().lower() for c in _split(line, ",")}) >= 2:
            fmt = "movielens-csv"  # with one of the three missing: say which
        elif len(f := line.split("\t")) == 4 and all(_is_number(x) for x in f):
            fmt = "ml100k"
        else:
            raise _undetected(at, line)
    if fmt == "ml1m":
        return _fixed(at, line, fmt, ":", ["user", "_s1", "item", "_s2", "rating", "_s3", "timestamp"], "::")
    if fmt == "ml100k":
        return _fixed(at, line, fmt, "\t", ["user", "item", "rating", "timestamp"], "\t")
    if fmt == "movielens-csv":
        header = _split(line, ",")
        lower = {c.strip().lower(): c for c in header}
        missing = [v for v in ("userId", "movieId", "rating") if v.lower() not in lower]
        if missing:
            raise InputError(
                f"{at}: header {header[:8]} lacks column(s) {', '.join(missing)} "
                f"(movielens-csv needs userId,movieId,rating[,timestamp])" + _delim_hint(line, ",")
            )
        roles = {r: lower[c.lower()] for r, c in _ML_CSV_HEADER.items() if c.lower() in lower}
        _check_unique(at, header, roles)
        return FormatSpec(fmt, ",", roles, header=header)
    # delimited
    if columns is None:
        raise ParameterError("--columns: required with --format delimited "
                             "(e.g. user=userId,item=movieId,rating=rating)")
    columns = parse_columns(columns)
    assert columns is not None
    delim = delimiter if delimiter else (_likely_delimiter(line) or ",")
    if delim == "\\t":
        delim = "\t"
    if len(delim) != 1:
        raise ParameterError(f"--delimiter={delim!r}: must be one character")
    fields = _split(line, delim)
    if all(v.isdigit() for v in columns.values()):  # 1-based positions, no header
        names = [f"c{i + 1}" for i in range(len(fields))]
        bad = [v for v in columns.values() if not 1 <= int(v) <= len(fields)]
        if bad:
            raise InputError(
                f"{at} has {len(fields)} field(s) split on {delim!r}; --columns positions {bad} are out of range"
                + _delim_hint(line, delim)
            )
        return FormatSpec(fmt, delim, {r: f"c{v}" for r, v in columns.items()}, column_names=names)
    header = fields
    stripped = {c.strip(): c for c in header}
    missing = [v for v in columns.values() if v not in header and v not in stripped]
    if missing:
        raise InputError(
            f"{at}: header {header[:8]} (split on {delim!r}) lacks column(s) {', '.join(missing)} named in --columns"
            + _delim_hint(line, delim)
        )
    roles = {r: v if v in header else stripped[v] for r, v in columns.items()}
    _check_unique(at, header, roles)
    return FormatSpec(fmt, delim, roles, header=header)


def _fixed(at: str, line: str, fmt: str, delim: str, names: list[str], shown: str) -> FormatSpec:
    n = len(line.split(delim))
    if n != len(names):
        expected = len([c for c in names if not c.startswith("_s")])
        raise InputError(
            f"{at} {line[:80]!r} does not split into {expected} fields on {shown!r} as {fmt} needs"
            + _delim_hint(line, delim)
        )
    roles = {c: c for c in names if not c.startswith("_s")}
    return FormatSpec(fmt, delim, roles, column_names=names, separators=[c for c in names if c.startswith("_s")])
