"""Serving snapshots: atomic publication, pruning, failure safety, the reader, the asset."""

import threading
from datetime import datetime

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster_duckdb import DuckDBResource

from ubap_assets.defs.serving.assets import serving_snapshot
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.reader import MissingTableError, SnapshotReader, open_reader
from ubap_assets.warehouse.snapshots import (
    CURRENT_POINTER,
    NoSnapshotError,
    current_snapshot,
    list_snapshots,
    publish_snapshot,
)


def _users(n: int) -> pl.DataFrame:
    # Deliberately not in user_id order, so clustering is observable.
    ids = [f"u{(i * 7) % n:03d}" for i in range(n)]
    return pl.DataFrame({"user_id": ids, "country": ["DE"] * n})


@pytest.fixture
def warehouse(tmp_path):
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield con
    con.close()


def _put(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    con.register("frame_in", frame)
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM frame_in")
    con.unregister("frame_in")


def test_publish_moves_the_pointer_and_keeps_the_newest(warehouse, tmp_path):
    snaps = tmp_path / "snapshots"
    for i in range(1, 6):
        _put(warehouse, "users", _users(i * 10))
        published = publish_snapshot(warehouse, ["users"], snaps, f"s{i}", keep=3)
        assert current_snapshot(snaps) == published
    assert [s.snapshot_id for s in list_snapshots(snaps)] == ["s5", "s4", "s3"]
    assert (snaps / CURRENT_POINTER).read_text().strip() == "s5"
    assert not list(snaps.glob(".*"))  # no staging or temp files left
    for snap in list_snapshots(snaps):
        with open_reader(snaps) if snap.snapshot_id == "s5" else SnapshotReader(snap) as r:
            assert r.scalar("SELECT count(*) FROM users") == int(snap.snapshot_id[1:]) * 10


def test_snapshot_tables_are_clustered_by_user(warehouse, tmp_path):
    _put(warehouse, "users", _users(50))
    publish_snapshot(warehouse, ["users"], tmp_path / "s", "one")
    with open_reader(tmp_path / "s") as r:
        ids = r.query("SELECT user_id FROM users")["user_id"].to_list()
    assert ids == sorted(ids)


def test_a_failed_publish_leaves_the_previous_snapshot_current(warehouse, tmp_path):
    snaps = tmp_path / "snapshots"
    _put(warehouse, "users", _users(10))
    publish_snapshot(warehouse, ["users"], snaps, "good")
    warehouse.execute("CREATE VIEW broken AS SELECT error('disk on fire') AS x")
    with pytest.raises(duckdb.Error, match="disk on fire"):
        publish_snapshot(warehouse, ["users", "broken"], snaps, "bad")
    assert current_snapshot(snaps).snapshot_id == "good"
    assert [p.name for p in snaps.iterdir() if p.name != CURRENT_POINTER] == ["good.duckdb"]
    # The warehouse connection is still usable afterwards.
    assert warehouse.execute("SELECT count(*) FROM users").fetchone()[0] == 10


def test_snapshots_are_immutable_and_ids_checked(warehouse, tmp_path):
    _put(warehouse, "users", _users(3))
    publish_snapshot(warehouse, ["users"], tmp_path, "once")
    with pytest.raises(FileExistsError):
        publish_snapshot(warehouse, ["users"], tmp_path, "once")
    with pytest.raises(ValueError, match="snapshot id"):
        publish_snapshot(warehouse, ["users"], tmp_path, "../escape")
    with pytest.raises(ValueError, match="table name"):
        publish_snapshot(warehouse, ['users"; DROP TABLE users; --'], tmp_path, "evil")


def test_no_snapshot_and_dangling_pointer(tmp_path):
    with pytest.raises(NoSnapshotError, match="make up"):
        open_reader(tmp_path)
    (tmp_path / CURRENT_POINTER).write_text("gone\n")
    with pytest.raises(NoSnapshotError, match="missing file"):
        open_reader(tmp_path)


def test_a_reader_keeps_its_snapshot_while_newer_ones_replace_it(warehouse, tmp_path):
    snaps = tmp_path / "snapshots"
    _put(warehouse, "users", _users(10))
    publish_snapshot(warehouse, ["users"], snaps, "old")
    with open_reader(snaps) as old:
        assert old.scalar("SELECT count(*) FROM users") == 10
        for i in range(3):
            _put(warehouse, "users", _users(20 + i))
            publish_snapshot(warehouse, ["users"], snaps, f"new{i}", keep=1)
        assert not (snaps / "old.duckdb").exists()  # pruned from disk ...
        assert old.snapshot_id == "old"
        assert old.scalar("SELECT count(*) FROM users") == 10  # ... still whole for its reader
    with open_reader(snaps) as new:
        assert new.snapshot_id == "new2"
        assert new.scalar("SELECT count(*) FROM users") == 22


def test_missing_table_error_names_table_and_fix(warehouse, tmp_path):
    _put(warehouse, "users", _users(3))
    publish_snapshot(warehouse, ["users"], tmp_path, "partial")
    with open_reader(tmp_path) as r:
        with pytest.raises(MissingTableError, match="daily_trends.*make up"):
            r.daily_trends()
        assert r.user("u001") == {"user_id": "u001", "country": "DE"}
        assert r.user("nobody") is None


def test_readers_in_many_threads(warehouse, tmp_path):
    _put(warehouse, "users", _users(200))
    publish_snapshot(warehouse, ["users"], tmp_path, "threads")
    errors, counts = [], []

    def work() -> None:
        try:
            for i in range(30):
                with open_reader(tmp_path) as r:
                    counts.append(
                        r.scalar("SELECT count(*) FROM users WHERE user_id >= ?", [f"u{i:03d}"])
                    )
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert len(counts) == 180 and max(counts) == 200


# --- the serving_snapshot asset ----------------------------------------------------------------


def _resources(path) -> dict:
    return {"warehouse": DuckDBResource(database=str(path))}


def test_serving_snapshot_asset_publishes_what_exists(tmp_path, monkeypatch, warehouse):
    monkeypatch.setenv("UBAP_SNAPSHOT_DIR", str(tmp_path / "snapshots"))
    _put(warehouse, "users", _users(12))
    _put(
        warehouse,
        "events",
        pl.DataFrame(
            {
                "user_id": ["u001", "u002"],
                "event_ts": [datetime(2026, 1, 5, 9), datetime(2026, 1, 9, 18)],
            }
        ),
    )
    warehouse.close()
    result = dg.materialize(
        [serving_snapshot],
        resources=_resources(tmp_path / "warehouse.duckdb"),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    snap = current_snapshot(tmp_path / "snapshots")
    assert snap.snapshot_id.endswith(result.run_id[:8])
    meta = result.asset_materializations_for_node("serving_snapshot")[0].metadata
    assert meta["snapshot_id"].value == snap.snapshot_id
    assert "daily_trends" in meta["missing_tables"].value
    with open_reader(tmp_path / "snapshots") as r:
        m = r.meta()
        assert m.run_id == result.run_id
        assert (str(m.data_start), str(m.data_end)) == ("2026-01-05", "2026-01-09")
        assert set(m.missing_tables) == set(t.SERVING_TABLES) - {"users", "events"}
        assert r.has_table(t.CHECK_RESULTS)
        assert r.scalar("SELECT count(*) FROM users") == 12


def test_a_failed_blocking_check_keeps_the_previous_snapshot(tmp_path, monkeypatch, warehouse):
    snaps = tmp_path / "snapshots"
    monkeypatch.setenv("UBAP_SNAPSHOT_DIR", str(snaps))
    _put(warehouse, "users", _users(5))
    publish_snapshot(warehouse, ["users"], snaps, "previous")
    warehouse.close()

    @dg.asset(
        name="users",
        check_specs=[dg.AssetCheckSpec("users_not_empty", asset="users", blocking=True)],
    )
    def bad_users() -> dg.MaterializeResult:
        return dg.MaterializeResult(
            check_results=[dg.AssetCheckResult(check_name="users_not_empty", passed=False)]
        )

    instance = dg.DagsterInstance.ephemeral()
    resources = _resources(tmp_path / "warehouse.duckdb")
    run = dg.materialize(
        [bad_users, serving_snapshot], resources=resources, instance=instance, raise_on_error=False
    )
    assert not run.success
    assert current_snapshot(snaps).snapshot_id == "previous"

    failed_steps = [e.step_key for e in run.get_step_failure_events()]
    assert failed_steps == ["users"]  # serving_snapshot never ran
    check = run.get_asset_check_evaluations()[0]
    assert (check.check_name, check.passed) == ("users_not_empty", False)


def test_a_pruned_snapshot_never_opened_raises_file_not_found(warehouse, tmp_path):
    _put(warehouse, "users", _users(4))
    gone = publish_snapshot(warehouse, ["users"], tmp_path, "gone")
    publish_snapshot(warehouse, ["users"], tmp_path, "next", keep=1)
    with pytest.raises(FileNotFoundError, match="open_reader"):
        SnapshotReader(gone)
    with open_reader(tmp_path) as r:
        assert r.snapshot_id == "next"
