"""Ingest progress counts the bytes of both files of a two-file ingest and ends at 100%."""

from __future__ import annotations

from pathlib import Path

from factorflow.data.ingest import ingest_source


def test_two_file_ingest_progress_reaches_the_total(tmp_path):
    train, test = tmp_path / "u1.base", tmp_path / "u1.test"
    train.write_text("".join(f"{u}\t{i}\t{1 + (u * i) % 5}\t{u * 100 + i}\n"
                             for u in range(1, 60) for i in range(1, 40)))
    test.write_text("".join(f"{u}\t{i}\t{1 + (u + i) % 5}\t{u * 100 + i}\n"
                            for u in range(1, 60) for i in range(40, 45)))
    calls: list[tuple[float, float]] = []
    ingest_source(str(train), str(tmp_path / "s"), test_source=str(test),
                  progress=lambda done, total, message="": calls.append((done, total)))
    total = Path(train).stat().st_size + Path(test).stat().st_size
    assert all(t == total for _, t in calls)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and dones[-1] == total
