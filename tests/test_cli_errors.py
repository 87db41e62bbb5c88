"""One clear line for every input the CLI can refuse, before any work starts; no traceback
unless --debug; a closed pipe is not an error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cli_env import CLI, cli_env, error_lines, run_cli

from factorflow.cli import main

DATA = Path(__file__).parent / "data" / "ml-latest-small"
RATINGS = str(DATA / "ratings.csv")


@pytest.mark.parametrize("args, message", [
    (["--name", "../x"], "--name='../x': must be letters, digits, '.', '_' or '-'"),
    (["--name", "a/b"], "--name='a/b': must be letters, digits"),
    (["--blocks", "0"], "--blocks=0: Input should be greater than or equal to 1"),
    (["--workers", "0"], "--workers=0: Input should be greater than or equal to 1"),
    (["--model-seed", "-1"], "--model-seed=-1: must be an integer >= 0"),
    (["--init-scale", "0"], "--init-scale=0.0: must be a finite number > 0"),  # the model config's own rule
    (["--rank", "0"], "--rank=0: must be an integer >= 1"),
    (["--model", "bias", "--sweeps", "3"], "--sweeps: model bias does not take it (it takes: --reg-user, --reg-item"),
    (["--model", "global-mean", "--rank", "3", "--reg", "1"], "--rank, --reg: model global-mean does not take them"),
    (["--test-fraction", "1.5"], "--test-fraction=1.5: Input should be less than 1"),
    (["--rank", "10000000"], "--rank=10000000: fitting als needs at least"),  # ~1.5 PB: no machine has it
    (["--model", "nope"], "--model='nope': must be one of"),
    (["--titles", str(DATA / "README.txt")], "README.txt:1: expected a header with 'movieId,title' columns"),
    (["--titles", "/no/such/movies.csv"], "/no/such/movies.csv: file not found"),
])
def test_retrain_refuses_before_the_flow(tmp_path, capsys, args, message):
    store = tmp_path / "store"
    assert main(["retrain", RATINGS, "--store", str(store), *args]) == 2
    err = capsys.readouterr().err
    [line] = error_lines(err)
    assert message in line, line
    assert not store.exists() or not any(store.iterdir())


def test_an_unwritable_store_is_one_line(tmp_path, capsys):
    assert main(["retrain", RATINGS, "--store", "/sys/ff-store"]) == 2
    [line] = error_lines(capsys.readouterr().err)
    assert line.startswith("factorflow: error: --store /sys/ff-store: cannot write there (")


def test_os_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    home = tmp_path / "prefect"
    proc = run_cli(["ingest", RATINGS, "--store", "/sys/ff-store"], home)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [line] = error_lines(proc.stderr)
    assert "/sys/ff-store" in line and "(run with --debug for the traceback)" in line
    debug = run_cli(["ingest", RATINGS, "--store", "/sys/ff-store", "--debug"], home)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_titles_read_movielens_100k_u_item(tmp_path):
    from factorflow.serving.titles import read_titles

    u_item = tmp_path / "u.item"
    u_item.write_bytes("1|Toy Story (1995)|01-Jan-1995||http://x|0|0\n"
                       "2|Fr\xe8re Jacques (1995)|01-Jan-1995||http://y|0|1\n".encode("latin-1"))
    assert read_titles(str(u_item), item_is_int=True) == {1: "Toy Story (1995)", 2: "Frère Jacques (1995)"}
    movies = read_titles(str(DATA / "movies.csv"), item_is_int=True)
    assert len(movies) == 9742 and movies[1] == "Toy Story (1995)"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A tiny published model (bias baseline: no Dask, quick)."""
    from factorflow.data.synth import write_synthetic_csv

    d = tmp_path_factory.mktemp("pub")
    write_synthetic_csv(str(d / "r.csv"), 200, 100, 8_000, seed=2)
    store = d / "store"
    proc = run_cli(["retrain", str(d / "r.csv"), "--store", str(store), "--model", "bias"], d / "prefect")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return store, d / "prefect"


def test_fold_in_refuses_ratings_outside_the_scale(published, capsys):
    store, _ = published
    assert main(["recommend", "--model", "bias", "--ratings", "1=5,2=9", "--store", str(store)]) == 2
    [line] = error_lines(capsys.readouterr().err)
    assert "--ratings: ratings outside the scale 0.5..5 of model bias" in line and line.endswith("2=9")


def test_a_closed_pipe_is_not_an_error(published):
    store, home = published
    for args in (["models", "bias"], ["recommend", "--model", "bias", "--user", "1", "-n", "50"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before the first write, like `| head -0`
        try:
            proc = subprocess.run(CLI + args + ["--store", str(store)], stdout=write_end, stderr=subprocess.PIPE,
                                  env=cli_env(home), timeout=120, check=False)
        finally:
            os.close(write_end)
        err = proc.stderr.decode()
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "BrokenPipeError" not in err
