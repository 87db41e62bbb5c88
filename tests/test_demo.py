"""The README's first command: ``factorflow demo`` end to end (generate, retrain flow, publish, recommend)."""

from __future__ import annotations

import re

from cli_env import run_cli


def _row(stdout: str, label: str) -> float:
    """The RMSE column of the metrics table's row ``label``."""
    m = re.search(rf"^{re.escape(label)}\s+([0-9.]+)\s", stdout, re.MULTILINE)
    assert m, f"no row {label!r} in:\n{stdout}"
    return float(m.group(1))


def test_demo_trains_publishes_and_recommends(tmp_path):
    store = tmp_path / "ff-store"
    proc = run_cli(["demo", "--store", str(store)], tmp_path / "prefect", timeout=900)
    said = f"exit {proc.returncode}\n--- stderr ---\n{proc.stderr[-4000:]}\n--- stdout ---\n{proc.stdout}"
    assert proc.returncode == 0, said
    assert "Traceback" not in proc.stderr, said
    out = proc.stdout
    assert re.search(r"^model demo-als version \S+ published in ", out, re.MULTILINE), said
    assert "held-out metrics on split 'random-f0.2-s42' (60000 test ratings)" in out, said
    als, mean, bias = _row(out, "als"), _row(out, "baseline: global-mean"), _row(out, "baseline: bias")
    floor = float(re.search(r"planted noise floor \(best achievable RMSE\): ([0-9.]+)", out).group(1))
    assert floor - 0.01 < als < bias < mean, said  # ALS learns the planted factors; nothing beats the noise
    assert als < floor + 0.15, said
    recs = re.findall(r"^\s+(\d+)\s+(\S+)\s+([0-9.]+)\s*$", out.split("sample: factorflow recommend", 1)[1],
                      re.MULTILINE)
    assert [int(r[0]) for r in recs] == [1, 2, 3, 4, 5], said
    assert len({r[1] for r in recs}) == 5
    scores = [float(r[2]) for r in recs]
    assert scores == sorted(scores, reverse=True) and 0.5 <= scores[-1] and scores[0] <= 5.5, said
    assert (store / "sources").is_dir() and any((store / "sources").glob("demo-*.csv"))
