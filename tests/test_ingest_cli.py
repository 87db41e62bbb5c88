"""``factorflow ingest`` on the command line: summary line, re-run, one-line errors (exit 2)."""

from __future__ import annotations

from pathlib import Path

from factorflow.cli import main

RATINGS = Path(__file__).parent / "data" / "ml-latest-small" / "ratings.csv"


def test_cli_ingest_then_existing_snapshot(tmp_path, capsys):
    store = str(tmp_path / "s")
    assert main(["ingest", str(RATINGS), "--store", store]) == 0
    first = capsys.readouterr().out.strip()
    assert "new snapshot" in first
    assert ("100,836 kept, 0 rejected, 0 duplicates; 610 users, 9,724 items; ratings 0.5..5.0 "
            "(scale 0.5..5, inferred)") in first
    assert "\n" not in first  # no reject note without rejects
    assert main(["ingest", str(RATINGS), "--store", store]) == 0
    second = capsys.readouterr().out.strip()
    assert "existing snapshot" in second and first.split()[0] == second.split()[0]


def test_cli_bad_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating,timestamp\n1,1,x,1\n2,2,y,2\n3,3,4,3\n")
    code = main(["ingest", str(bad), "--store", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"factorflow: error: {bad}: 2 of 3 rows rejected")
    assert "first bad lines: 2 (non-numeric rating), 3 (non-numeric rating)" in err
    bad = tmp_path / "s" / "datasets" / "bad"
    assert not bad.exists() or not any(bad.iterdir())


def test_cli_options(tmp_path, capsys):
    src = tmp_path / "x.txt"
    src.write_text("a|p|4|10\nb|p|9|11\n")
    code = main([
        "ingest", str(src), "--store", str(tmp_path / "s"), "--name", "mine", "--format", "delimited",
        "--columns", "user=1,item=2,rating=3,timestamp=4", "--delimiter", "|", "--rating-range", "1,5",
        "--max-reject-fraction", "0.5",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("mine/") and "1 kept, 1 rejected" in out
    assert main(["ingest", str(src), "--store", str(tmp_path / "s"), "--rating-range", "x"]) == 2
    assert "--rating-range='x'" in capsys.readouterr().err


def test_cli_prints_the_reject_note_and_one_line_warnings(tmp_path, capsys):
    src = tmp_path / "r.csv"
    body = "".join(f"{u},{i},{(u + i) % 5 + 1},{u}\n" for u in range(1, 41) for i in range(1, 31))
    src.write_text("userId,movieId,rating,timestamp\n" + body + "1,99,1e6,1\n2,99,x,2\n")
    assert main(["ingest", str(src), "--store", str(tmp_path / "s")]) == 0
    out, err = capsys.readouterr()
    summary, note = out.splitlines()
    assert "1,200 kept, 2 rejected" in summary and "(scale 1..5, inferred)" in summary
    path = summary.rsplit(" -> ", 1)[1]
    assert note == ("2 rows rejected (1 non-numeric rating, 1 rating outside the inferred scale 1..5); "
                    f"see {path}/rejects.parquet")
    warning = (f"factorflow: warning: {src}: 1 rating(s) outside the inferred scale 1..5 rejected (lines 1202); "
               "pass --rating-range LOW,HIGH to set the scale yourself")
    assert err.splitlines() == [warning]
    assert main(["ingest", str(src), "--store", str(tmp_path / "s")]) == 0  # existing snapshot: same note
    assert capsys.readouterr().out.splitlines()[1] == note
