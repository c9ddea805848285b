"""The runs index (dlx.records.index): list_runs' rows with it are the rows without it
(list_runs(index=False), which reads every folder) whatever happened to the folders since."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dlx.records import index as runs_index
from dlx.records.find import run_folders
from dlx.records.layout import META_FILE, RUNS_INDEX, SUMMARY_FILE
from dlx.records.reading import list_runs
from dlx.views.tables import IdParts


@pytest.fixture(autouse=True)
def no_racy_window(monkeypatch):
    """Files written by a test are milliseconds old; the index would not trust them yet
    (RACY_NS) and so never be used. With no window, the entries are used at once."""
    monkeypatch.setattr(runs_index, "RACY_NS", -(10**12))


def make_run(runs: Path, rid: str, status: str = "completed", acc: float | None = 0.5, **meta) -> Path:
    d = runs / rid
    d.mkdir(parents=True)
    (d / META_FILE).write_text(json.dumps({"run_id": rid, "name": "tiny", "status": status, "started": rid, **meta}))
    if acc is not None:
        summary = {"steps": 30, "final": {"train_loss": 0.7, "test_acc": acc}, "verdicts": [{"kind": "healthy"}]}
        (d / SUMMARY_FILE).write_text(json.dumps(summary))
    return d


def rows_agree(runs: Path) -> list[dict]:
    """list_runs with the index equals list_runs reading every folder (skipped too); its rows."""
    skipped, skipped_oracle = [], []
    rows = list_runs(runs, skipped)
    assert rows == list_runs(runs, skipped_oracle, index=False)
    assert skipped == skipped_oracle
    return rows


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    for i in range(5):
        make_run(runs, f"20260101-00000{i}-tiny-a0000{i}", acc=0.1 * i)
    return runs


def test_rows_with_the_index_are_the_rows_without_it_on_fresh_folders(runs):
    first = rows_agree(runs)  # no index yet: every folder read, the index written
    assert (runs / RUNS_INDEX).is_file() and len(first) == 5
    assert rows_agree(runs) == first  # from the index


def test_the_index_is_used_while_the_files_are_unchanged(runs, monkeypatch):
    rows_agree(runs)
    from dlx.records import reading

    def no_reads(*a, **k):
        raise AssertionError("a folder was read although nothing changed")

    monkeypatch.setattr(reading, "read_object", no_reads)
    mtime = (runs / RUNS_INDEX).stat().st_mtime_ns
    assert len(list_runs(runs)) == 5
    assert (runs / RUNS_INDEX).stat().st_mtime_ns == mtime  # nothing changed: not rewritten


def test_a_run_that_finished_since_shows_its_new_row(runs):
    d = make_run(runs, "20260101-000009-tiny-b00009", status="running", acc=None, pid=os.getpid())
    assert [r["status"] for r in rows_agree(runs) if r["run_id"] == d.name] == ["running"]
    (d / META_FILE).write_text(json.dumps({"name": "tiny", "status": "completed", "started": "x"}))
    (d / SUMMARY_FILE).write_text(json.dumps({"steps": 30, "final": {"test_acc": 0.9}}))
    (row,) = [r for r in rows_agree(runs) if r["run_id"] == d.name]
    assert row["status"] == "completed" and row["test_acc"] == 0.9 and row["steps"] == 30


def test_a_rewritten_summary_is_read_again(runs):
    rows_agree(runs)
    d = run_folders(runs)[2]
    (d / SUMMARY_FILE).write_text(json.dumps({"steps": 31, "final": {"test_acc": 0.75}, "verdicts": []}))
    (row,) = [r for r in rows_agree(runs) if r["run_id"] == d.name]
    assert (row["steps"], row["test_acc"], row["verdict"]) == (31, 0.75, None)


def test_a_summary_rewritten_within_one_timestamp_tick_is_still_read_again(runs, monkeypatch):
    """Same inode, size and times (a rewrite in place within the filesystem's clock tick): the
    key cannot tell; an entry whose files are younger than RACY_NS at the index's writing is
    not trusted, so the folder is read again."""
    monkeypatch.setattr(runs_index, "RACY_NS", 2_000_000_000)
    stat_key = runs_index.file_key

    def coarse(path):  # a filesystem keeping whole seconds (ext3, FAT): a rewrite within one keeps its key
        key = stat_key(path)
        return key and [key[0], key[1], key[2] // 10**9 * 10**9, key[3] // 10**9 * 10**9]

    monkeypatch.setattr(runs_index, "file_key", coarse)
    rows_agree(runs)
    d = run_folders(runs)[0]
    f = d / SUMMARY_FILE
    key = coarse(f)
    with open(f, "r+") as out:  # in place: the same inode, the same size
        out.write(f.read_text().replace('"steps": 30', '"steps": 99'))
    (row,) = [r for r in rows_agree(runs) if r["run_id"] == d.name]
    assert row["steps"] == 99
    if coarse(f) != key:  # the second turned between the two writes: the key told, RACY_NS was not needed
        pytest.skip("the clock's second turned during the test")


def test_a_deleted_folder_leaves_the_rows_and_the_index(runs):
    rows_agree(runs)
    gone = run_folders(runs)[1]
    for f in gone.iterdir():
        f.unlink()
    gone.rmdir()
    assert gone.name not in [r["run_id"] for r in rows_agree(runs)]
    assert gone.name not in json.loads((runs / RUNS_INDEX).read_text())["runs"]


def test_an_added_folder_and_an_unreadable_one_are_listed_as_without_the_index(runs):
    rows_agree(runs)
    make_run(runs, "20260101-000008-tiny-c00008", acc=0.8)
    bad = make_run(runs, "20260101-000007-tiny-c00007")
    (bad / META_FILE).write_text("{not json")
    skipped = []
    rows = list_runs(runs, skipped)
    assert len(rows) == 6 and [s.split()[0] for s in skipped] == [bad.name]
    rows_agree(runs)


@pytest.mark.parametrize(
    "damage",
    [b"{torn", b"[]", b'{"version": 999, "written_ns": 1, "runs": {}}', b"\xff\xfe", b'{"version": 1, "runs": 3}'],
)
def test_a_damaged_or_foreign_index_is_ignored_and_rebuilt(runs, damage):
    rows_agree(runs)
    (runs / RUNS_INDEX).write_bytes(damage)
    rows_agree(runs)
    assert json.loads((runs / RUNS_INDEX).read_text())["version"] == runs_index.INDEX_VERSION


def test_an_index_entry_of_the_wrong_shape_is_not_trusted(runs):
    rows_agree(runs)
    data = json.loads((runs / RUNS_INDEX).read_text())
    name = next(iter(data["runs"]))
    data["runs"][name]["row"] = {"status": "completed"}  # keys missing: an index edited by hand
    (runs / RUNS_INDEX).write_text(json.dumps(data))
    rows_agree(runs)


def test_a_running_run_whose_process_is_gone_becomes_interrupted_with_the_meta_unchanged(runs):
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        d = make_run(runs, "20260101-000009-tiny-b00009", status="running", acc=None, pid=writer.pid)
        (d / META_FILE).write_text(
            (d / META_FILE).read_text()[:-1] + f', "host": {json.dumps(socket.gethostname())}' + "}"
        )
        assert [r["status"] for r in rows_agree(runs) if r["run_id"] == d.name] == ["running"]
    finally:
        writer.kill()
        writer.wait()
    key = runs_index.folder_key(d)
    # Killed: its meta.json still says running, unchanged, so the index entry stands; its status does not.
    assert json.loads((runs / RUNS_INDEX).read_text())["runs"][d.name]["key"] == key
    assert [r["status"] for r in rows_agree(runs) if r["run_id"] == d.name] == ["interrupted"]
    assert runs_index.folder_key(d) == key


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_runs_folder_lists_and_gets_no_index(runs):
    os.chmod(runs, stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert len(rows_agree(runs)) == 5
        assert not (runs / RUNS_INDEX).exists()
    finally:
        os.chmod(runs, stat.S_IRWXU)


def test_an_index_that_cannot_be_written_is_no_error(runs, monkeypatch):
    """What a read-only folder does (the test above) where the tests run as root."""

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(runs_index, "write_atomic", refuse)
    assert len(rows_agree(runs)) == 5
    assert not (runs / RUNS_INDEX).exists()


def test_no_index_is_written_where_there_are_no_runs(tmp_path):
    assert list_runs(tmp_path / "none") == [] and not (tmp_path / "none").exists()
    (tmp_path / "empty").mkdir()
    assert list_runs(tmp_path / "empty") == [] and not (tmp_path / "empty" / RUNS_INDEX).exists()


def test_the_index_is_never_a_run_and_dlx_runs_json_is_unchanged(runs):
    from typer.testing import CliRunner

    from dlx.cli.app import app

    def dlx_runs(*args):
        res = CliRunner().invoke(app, ["runs", "--runs-dir", str(runs), *args])
        assert res.exit_code == 0, res.output
        return res.output

    before = dlx_runs("--json")  # no index yet
    assert (runs / RUNS_INDEX).is_file()
    assert dlx_runs("--json") == before and json.loads(before) == list_runs(runs, index=False)
    assert RUNS_INDEX not in [d.name for d in run_folders(runs)] and RUNS_INDEX not in before
    assert "5 run(s)" in dlx_runs()


def test_a_short_id_is_unique_among_many_ids_as_a_one_by_one_count_says():
    ids = [f"20260101-0000{i:02d}-tiny-{i % 7:06x}" for i in range(40)] + ["x-000003", "000004-extra"]
    parts = IdParts(ids)
    for i in ids:
        for part in {i[k:] for k in range(len(i))} | {i[k : k + 3] for k in range(len(i))}:
            assert parts.unique(part) == (sum(part in j for j in ids) == 1), part


def draw(fitted, width: int, color: str | None) -> str:
    """As dlx runs prints a table (dlx.cli.common.print_fitted), to a terminal with colours or to a pipe."""
    from rich.console import Console

    con = Console(
        width=max(width, fitted.width),
        file=io.StringIO(),
        highlight=False,
        soft_wrap=True,
        color_system=color,
        force_terminal=color is not None,
    )
    con.print(fitted.table, crop=False)
    return con.file.getvalue()


def many_rows(n: int, verdict: str = "healthy") -> list[dict]:
    statuses = ["completed", "running", "interrupted", "diverged", "failed", "pruned"]
    return [
        {
            "run_id": f"20260101-{i:06d}-quickstart-{i:06x}",
            "status": statuses[i % len(statuses)],
            "steps": None if i % 5 == 0 else 30 * i,
            "train_loss": 0.5 / (i + 1),
            "test_loss": None if i % 7 == 0 else 1e-5 * i,
            "test_acc": 0.001 * i,
            "verdict": None if i % 3 == 0 else verdict,
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("width", [160, 80, 40])
@pytest.mark.parametrize("color", [None, "truecolor"])
def test_a_table_of_many_runs_prints_exactly_as_the_rich_table_does(width, color, monkeypatch):
    from dlx.views import tables

    rows = many_rows(150)
    fast = tables.runs_table(rows, width)
    out = draw(fast, width, color)
    assert fast.table.fast  # drawn line by line
    monkeypatch.setattr(tables, "MANY_ROWS", 10**9)  # the rich Table: the oracle
    assert out == draw(tables.runs_table(rows, width), width, color)


def test_a_table_of_many_runs_with_wrapped_cells_is_drawn_by_rich(monkeypatch):
    from dlx.views import tables

    rows = many_rows(150, verdict="exploding_gradients_and_then_some more words")
    fitted = tables.runs_table(rows, 60)
    out = draw(fitted, 60, None)
    assert not fitted.table.fast
    monkeypatch.setattr(tables, "MANY_ROWS", 10**9)
    assert out == draw(tables.runs_table(rows, 60), 60, None)
