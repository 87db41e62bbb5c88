"""Write the bad-input files that are binary or large into a folder (the small text ones are committed).

    python tests/data/bad/make_corpus.py OUT_DIR

Deterministic: the same bytes every time. ``expected.json`` beside this script says what
ingesting each file must give.
"""

from __future__ import annotations

import gzip
import io
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

HEADER = "userId,movieId,rating,timestamp\n"


def _rows(n: int, offset: int = 0) -> list[str]:
    """``n`` valid rows on a 1..5 scale: users cycle over 97, items over 89."""
    return [f"{k % 97 + 1},{k % 89 + 1},{(k * 7) % 5 + 1},{1_000_000 + k}\n" for k in range(offset, offset + n)]


def _csv(rows: list[str]) -> bytes:
    return (HEADER + "".join(rows)).encode()


def latin1() -> bytes:
    return "userId,movieId,rating,timestamp\nJosé,1,4,1\nZoë,2,3,2\n".encode("latin-1")


def latin1_late() -> bytes:
    rows = _rows(6000)
    rows[5000] = "José,1,4,1\n"  # line 5002, past the 64 KiB sniffed for the format
    return "".join([HEADER, *rows]).encode("latin-1")


def utf16() -> bytes:
    return (HEADER + "".join(_rows(5))).encode("utf-16")  # with a BOM, as Windows tools write it


def utf16_no_bom() -> bytes:
    return (HEADER + "".join(_rows(5))).encode("utf-16-le")


def nul() -> bytes:
    return _csv(_rows(3)) + b"\x00" * 16 + _csv(_rows(3))[len(HEADER) :]


def nul_late() -> bytes:
    rows = _rows(6000)
    rows[5000] = "5001,1\x00\x00\x00,4,1\n"  # line 5002: a NUL run inside an id
    return _csv(rows)


def truncated_gzip() -> bytes:
    whole = gzip.compress(_csv(_rows(20000)), mtime=0)
    return whole[: len(whole) // 2]


def good_gzip() -> bytes:
    return gzip.compress(_csv(_rows(10)), mtime=0)


def empty_gzip() -> bytes:
    return gzip.compress(b"", mtime=0)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            z.writestr(info, data)
    return buf.getvalue()


def two_members_zip() -> bytes:
    return _zip({"ml/ratings.csv": _csv(_rows(10)), "ml/movies.csv": b"movieId,title\n1,Toy Story\n"})


def no_members_zip() -> bytes:
    return _zip({})


def corrupt_zip() -> bytes:
    return b"PK\x03\x04" + bytes(range(256)) * 4


def out_of_scale() -> bytes:
    rows = _rows(2000)
    rows[700] = "1,1,1000000,1\n"  # line 702
    rows[1500] = "2,2,7,2\n"  # line 1502
    return _csv(rows)


FILES: dict[str, Callable[[], bytes]] = {
    "latin1.csv": latin1,
    "latin1_late.csv": latin1_late,
    "utf16.csv": utf16,
    "utf16_no_bom.csv": utf16_no_bom,
    "nul.csv": nul,
    "nul_late.csv": nul_late,
    "truncated.csv.gz": truncated_gzip,
    "good.csv.gz": good_gzip,
    "empty.csv.gz": empty_gzip,
    "two_members.zip": two_members_zip,
    "no_members.zip": no_members_zip,
    "corrupt.zip": corrupt_zip,
    "out_of_scale.csv": out_of_scale,
}


def build(out_dir: Path) -> list[Path]:
    """Write every generated file into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in FILES.items():
        path = out_dir / name
        path.write_bytes(make())
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in build(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(p)
