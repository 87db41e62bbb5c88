"""The bad-input corpus (tests/data/bad/): every file gives the snapshot or the one-line error that
tests/data/bad/expected.json declares for it.

Error cases run the real CLI in a subprocess (``python -m factorflow ingest FILE``, two at a time,
each against its own copy of a store that already holds a snapshot of the same dataset name): exit
2, exactly one ``factorflow: error:`` line, no traceback, and the store left exactly as it was (no
new snapshot, no ``.tmp-*`` folder, the existing snapshot's files unchanged). Snapshot cases run
``factorflow.cli.main`` in-process (the same code, without ~1 s of imports each) and check the
manifest counts, the rejects file, the reject note and that warnings are one
``factorflow: warning:`` line each; two of them also run as a subprocess.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from factorflow.cli import main
from factorflow.storage.datasets import read_ids, read_rejects, resolve_snapshot

BAD = Path(__file__).parent / "data" / "bad"
_spec = importlib.util.spec_from_file_location("make_corpus", BAD / "make_corpus.py")
make_corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_corpus)

CASES = json.loads((BAD / "expected.json").read_text())["cases"]
ERRORS = [c for c in CASES if "error" in c]
SNAPSHOTS = [c for c in CASES if "error" not in c]
NAME = "corpus"  # every ingest writes to this dataset name, so a failing one could touch the existing snapshot
GOOD = "userId,movieId,rating,timestamp\n1,1,4.0,1\n1,2,3.5,2\n2,1,5.0,3\n"


def case_id(case: dict) -> str:
    return case["file"] + ("[" + " ".join(case["args"]) + "]" if case.get("args") else "")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    make_corpus.build(out)
    return out


def source(case: dict, generated: Path) -> str:
    path = BAD / case["file"]
    return str(path if path.exists() else generated / case["file"])


def fingerprint(root: Path) -> dict[str, tuple]:
    """Every folder and file under ``root``: (size, mtime_ns, sha256) for files."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = ()
        for f in filenames:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns, digest)
    return out


@pytest.fixture(scope="module")
def error_runs(generated, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path, dict]]:
    """Each error case run through the CLI against its own copy of a store holding a snapshot of
    dataset NAME: case id → (process, store, the store's fingerprint before)."""
    root = tmp_path_factory.mktemp("errors")
    good = root / "good.csv"
    good.write_text(GOOD)
    template = root / "template"
    assert main(["ingest", str(good), "--store", str(template), "--name", NAME]) == 0
    jobs = []
    for k, case in enumerate(ERRORS):
        store = root / f"store{k}"
        shutil.copytree(template, store)
        args = ["ingest", source(case, generated), "--store", str(store), "--name", NAME, *case.get("args", [])]
        jobs.append((case_id(case), store, fingerprint(store), args))
    with ThreadPoolExecutor(max_workers=2) as pool:  # the CLI's start-up is most of each run
        procs = list(pool.map(run_cli, [job[3] for job in jobs]))
    return {cid: (proc, store, before) for (cid, store, before, _), proc in zip(jobs, procs, strict=True)}


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FACTORFLOW_"))}
    return subprocess.run([sys.executable, "-m", "factorflow", *args], capture_output=True, text=True, timeout=120,
                          env=env, stdin=subprocess.DEVNULL, check=False)


def test_every_corpus_file_has_an_expected_outcome(generated):
    on_disk = {p.name for p in BAD.iterdir() if p.name not in {"expected.json", "make_corpus.py", ".gitattributes"}}
    made = set(make_corpus.FILES)
    in_table = {c["file"] for c in CASES}
    assert not on_disk & made
    assert in_table == on_disk | made
    assert len(SNAPSHOTS) >= 25 and len(ERRORS) >= 25


@pytest.mark.parametrize("case", ERRORS, ids=case_id)
def test_error_is_one_line_and_writes_nothing(case, error_runs):
    proc, store, before = error_runs[case_id(case)]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("factorflow: error:")]
    assert len(errors) == 1, proc.stderr
    assert case["error"] in errors[0]
    ours = ("factorflow: error:", "factorflow: warning:")
    others = [line for line in proc.stderr.splitlines() if not line.startswith(ours)]
    assert others == []
    # nothing written: no new snapshot, no .tmp-* folder; the existing snapshot untouched
    after = fingerprint(store)
    assert not [p for p in after if ".tmp-" in p]
    assert after == before


@pytest.mark.parametrize("case", SNAPSHOTS, ids=case_id)
def test_snapshot_counts_and_rejects(case, generated, tmp_path, capsys):
    store = str(tmp_path / "s")
    code = main(["ingest", source(case, generated), "--store", store, "--name", NAME, *case.get("args", [])])
    out, err = capsys.readouterr()
    assert code == 0, err
    check_snapshot(case, store, out, err)


def check_snapshot(case: dict, store: str, out: str, err: str) -> None:
    ref = resolve_snapshot(store, NAME)
    m = ref.manifest
    assert (m["rows_kept"], m["rows_rejected"]) == (case["kept"], len(case["rejects"]))
    rej = read_rejects(ref)
    assert [list(x) for x in zip(rej.column("line").to_pylist(), rej.column("reason").to_pylist(),
                                                   strict=True)] == case["rejects"]
    if "duplicates" in case:
        assert m["rows_duplicate"] == case["duplicates"]
    if "rating_range" in case:
        assert m["rating_range"] == case["rating_range"]
    if "read_path" in case:
        assert m["read_path"] == case["read_path"]
    for key, value in case.get("manifest", {}).items():
        assert m[key] == value, key
    users, items = read_ids(ref, "user").column("user_id"), read_ids(ref, "item").column("item_id")
    if "id_types" in case:
        assert [str(users.type).replace("large_", ""), str(items.type)] == case["id_types"]
    if "ids" in case:
        assert {"user": users.to_pylist(), "item": items.to_pylist()} == case["ids"]
    assert len(users) == m["n_users"] and len(items) == m["n_items"]
    # output: the summary line, the reject note when there are rejects, one-line warnings only
    lines = out.splitlines()
    assert lines[0].startswith(f"{NAME}/{ref.snapshot} (new snapshot): {case['kept']:,} kept, "
                               f"{len(case['rejects']):,} rejected")
    n = len(case["rejects"])
    counts = Counter(reason for _, reason in case["rejects"])
    reasons = ", ".join(f"{c} {r}" for r, c in sorted(counts.items(), key=lambda rc: (-rc[1], rc[0])))
    note = [f"{n} row{'s' if n > 1 else ''} rejected ({reasons}); see {ref.path}/rejects.parquet"] if n else []
    assert lines[1:] == note
    assert all(line.startswith("factorflow: warning: ") for line in err.splitlines()), err
    if "warning" in case:
        assert any(case["warning"] in line for line in err.splitlines()), err


@pytest.mark.parametrize("name", ["out_of_scale.csv", "one_user.csv"])
def test_snapshot_through_the_real_cli(name, generated, tmp_path):
    """A few snapshot cases as a subprocess too: the reject note on stdout, warnings one line each."""
    [case] = [c for c in SNAPSHOTS if c["file"] == name and not c.get("args")]
    store = str(tmp_path / "s")
    proc = run_cli(["ingest", source(case, generated), "--store", store, "--name", NAME])
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    check_snapshot(case, store, proc.stdout, proc.stderr)
