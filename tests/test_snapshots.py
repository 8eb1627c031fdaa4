"""Serving snapshots: atomic publication, pruning, failure safety, the reader, the asset."""

import errno
import threading
from datetime import date, datetime, timedelta

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster_duckdb import DuckDBResource

from ubap_assets.defs.serving.assets import serving_snapshot
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.introspect import warehouse_tables
from ubap_assets.warehouse.reader import MissingTableError, SnapshotReader, open_reader
from ubap_assets.warehouse.snapshots import (
    CURRENT_POINTER,
    RECENT_EVENTS_PER_USER,
    TABLE_STATUS,
    TABLE_STATUS_SCHEMA,
    NoSnapshotError,
    SnapshotBase,
    current_snapshot,
    list_snapshots,
    publish_snapshot,
    read_table_status,
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


# --- publishing that cannot be wedged -------------------------------------------------------


class _FullDisk:
    """A warehouse connection on a full disk: copying into the staging file fails half-way
    (ENOSPC) and so does the DETACH of the cleanup; everything else is the real connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con

    def execute(self, sql: str, *args):
        if sql.startswith("CREATE TABLE ") and "FROM main." in sql:
            self._con.execute(sql, *args)  # the file grows, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        if sql.startswith("DETACH"):
            self._con.execute(sql, *args)
            raise duckdb.IOException("Could not write file: No space left on device")
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._con, name)


def test_a_full_disk_leaves_no_staging_file_and_the_next_publish_works(warehouse, tmp_path):
    snaps = tmp_path / "snapshots"
    _put(warehouse, "users", _users(10))
    publish_snapshot(warehouse, ["users"], snaps, "good")
    with pytest.raises(OSError, match="No space left"):
        publish_snapshot(_FullDisk(warehouse), ["users"], snaps, "full")
    assert sorted(p.name for p in snaps.iterdir()) == [CURRENT_POINTER, "good.duckdb"]
    assert current_snapshot(snaps).snapshot_id == "good"

    # A publish that crashed outright (kill -9) leaves its staging files: the next one prunes them.
    (snaps / ".crashed.staging.duckdb").write_bytes(b"\0" * 4096)
    (snaps / ".crashed.staging.duckdb.wal").write_bytes(b"\0" * 16)
    _put(warehouse, "users", _users(12))
    publish_snapshot(warehouse, ["users"], snaps, "next")
    assert sorted(p.name for p in snaps.iterdir()) == [
        CURRENT_POINTER,
        "good.duckdb",
        "next.duckdb",
    ]
    with open_reader(snaps) as r:
        assert (r.snapshot_id, r.scalar("SELECT count(*) FROM users")) == ("next", 12)


def _events(per_user: dict[str, int]) -> pl.DataFrame:
    rows = []
    for user, n in per_user.items():
        for i in range(n):
            rows.append(
                {
                    "event_id": f"{user}-{i:04d}",
                    "user_id": user,
                    "session_id": f"{user}-s{i // 10}",
                    "event_ts": datetime(2026, 1, 5) + timedelta(minutes=i),
                    "event_type": "page_view",
                    "page_id": f"p{i % 7}",
                    "device": "mobile",
                    "traffic_source": "organic",
                    "revenue": None,
                }
            )
    return pl.DataFrame(rows)


def test_the_snapshot_keeps_only_the_recent_events_a_reader_shows(warehouse, tmp_path):
    heavy = RECENT_EVENTS_PER_USER + 40
    _put(warehouse, "events", _events({"u001": heavy, "u002": 3}))
    publish_snapshot(warehouse, ["events"], tmp_path, "trimmed")
    with open_reader(tmp_path) as r:
        columns = r.query("SELECT * FROM events LIMIT 0").columns
        per_user = dict(r.query("SELECT user_id, count(*) AS n FROM events GROUP BY 1").rows())
        latest = r.recent_activity("u001", limit=RECENT_EVENTS_PER_USER)
    assert "traffic_source" not in columns  # no reader shows it
    assert per_user == {"u001": RECENT_EVENTS_PER_USER, "u002": 3}
    # What the reader answers is what the whole table would have answered.
    assert latest["event_ts"].to_list()[0] == datetime(2026, 1, 5) + timedelta(minutes=heavy - 1)
    assert latest.height == RECENT_EVENTS_PER_USER
    assert latest["event_ts"].min() == datetime(2026, 1, 5) + timedelta(minutes=40)


def test_the_recent_events_are_each_users_newest_as_a_window_ranks_them(warehouse, tmp_path):
    limit = RECENT_EVENTS_PER_USER
    counts = {"heavy": limit + 25, "at_limit": limit, "light": 4, "null": limit + 3}
    events = _events(counts).with_columns(
        # ties in time, broken by event_id as the window orders them; one user with no id
        event_ts=pl.col("event_ts").dt.truncate("2m"),
        user_id=pl.when(pl.col("user_id") == "null").then(None).otherwise(pl.col("user_id")),
    )
    _put(warehouse, "events", events)
    publish_snapshot(warehouse, ["events"], tmp_path, "ranked")
    columns = ", ".join(f'"{c}"' for c in events.columns if c != "traffic_source")
    windowed = warehouse.execute(
        f"SELECT {columns} FROM events QUALIFY row_number() OVER "
        "(PARTITION BY user_id ORDER BY event_ts DESC, event_id DESC) <= ?",
        [limit],
    ).pl()
    with open_reader(tmp_path) as r:
        held = r.query("SELECT * FROM events")
    assert held.height == 3 * limit + 4
    assert held.sort("event_id").equals(windowed.select(held.columns).sort("event_id"))


def test_read_table_status_lists_only_the_tables_not_refreshed(warehouse, tmp_path):
    _put(warehouse, "users", _users(3))
    old = publish_snapshot(warehouse, ["users"], tmp_path, "before_status")
    with duckdb.connect(str(old.path), read_only=True) as con:
        assert read_table_status(con) == {}  # an older snapshot without the table
    status = pl.DataFrame(
        [
            {"table_name": "users", "refreshed": True, "reason": None, "materialized_at": None},
            {
                "table_name": "model_cards",
                "refreshed": False,
                "reason": "model_training failed: single class in the training labels",
                "materialized_at": datetime(2026, 1, 4, 2),
            },
        ],
        schema=TABLE_STATUS_SCHEMA,
    )
    new = publish_snapshot(
        warehouse, ["users"], tmp_path, "with_status", extra={TABLE_STATUS: status}
    )
    with duckdb.connect(str(new.path), read_only=True) as con:
        assert read_table_status(con) == {
            "model_cards": "model_training failed: single class in the training labels"
        }


# --- publishing from the snapshot in service ----------------------------------------------------


def _snapshot_rows(path) -> dict[str, list[tuple]]:
    """Every table of a snapshot file as sorted rows (the extras' run-dependent tables left out)."""
    with duckdb.connect(str(path), read_only=True) as con:
        names = sorted(warehouse_tables(con))
        return {
            name: sorted(con.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
            for name in names
        }


def _day_events(day: int, per_user: dict[str, int], tag: str = "") -> pl.DataFrame:
    rows = []
    for user, n in per_user.items():
        for i in range(n):
            rows.append(
                {
                    "event_id": f"{user}-{day:02d}-{i:03d}{tag}",
                    "user_id": user,
                    "session_id": f"{user}-s{day}",
                    "event_ts": datetime(2026, 1, 5 + day, 8) + timedelta(minutes=i),
                    "event_type": "page_view",
                    "page_id": None if i % 5 == 0 else f"p{i % 7}",
                    "device": "mobile",
                    "traffic_source": "organic",
                    "revenue": 12.5 if i % 9 == 0 else None,
                }
            )
    return pl.DataFrame(rows)


def _events_through(days: dict[int, pl.DataFrame]) -> pl.DataFrame:
    return pl.concat([days[d] for d in sorted(days)])


def test_a_publish_from_the_snapshot_in_service_equals_one_from_scratch(warehouse, tmp_path):
    # u1 passes the limit, u2 stays under it, u3 loses events in a rewritten day.
    days = {d: _day_events(d, {"u1": 60, "u2": 3, "u3": 40 if d < 4 else 2}) for d in range(6)}
    _put(warehouse, "events", _events_through({d: days[d] for d in range(4)}))
    _put(warehouse, "users", _users(5))
    _put(warehouse, "pages", pl.DataFrame({"page_id": ["p1"], "title": ["One"]}))
    first = publish_snapshot(warehouse, ["users", "pages", "events"], tmp_path / "a", "night1")

    # Night 2: day 3 rewritten with the same events, days 4 and 5 new; users rewritten; pages
    # gone from the warehouse.
    _put(warehouse, "events", _events_through(days))
    _put(warehouse, "users", _users(7))
    warehouse.execute("DROP TABLE pages")
    tables = ["users", "pages", "events"]
    base = SnapshotBase(first.path, unchanged=frozenset(), events_since=date(2026, 1, 8))
    incremental = publish_snapshot(warehouse, tables, tmp_path / "a", "night2", base=base)
    scratch = publish_snapshot(warehouse, tables, tmp_path / "b", "scratch")
    assert _snapshot_rows(incremental.path) == _snapshot_rows(scratch.path)
    rows = _snapshot_rows(incremental.path)
    assert set(rows) == {"users", "events"}
    per_user = {}
    for row in rows["events"]:
        per_user[row[1]] = per_user.get(row[1], 0) + 1
    assert per_user == {"u1": RECENT_EVENTS_PER_USER, "u2": 18, "u3": 164}


def test_a_night_past_the_limit_trims_the_oldest_rows_like_a_publish_from_scratch(
    warehouse, tmp_path
):
    # u1 held the limit and gets 140 rows in the rewritten days (70 of its base rows go); u2 gets
    # more than the limit in the new day alone (all its base rows go, the new day is cut); u3's
    # events of a day share one instant, so both cuts (in the rewritten days and in the base's
    # oldest day) fall inside an instant, where event_id decides.
    def tied(day: int) -> pl.DataFrame:
        return _day_events(day, {"u3": 120 if day < 3 else 30}).with_columns(
            pl.lit(datetime(2026, 1, 5 + day, 8)).alias("event_ts")
        )

    days = {
        d: pl.concat([_day_events(d, {"u1": 70, "u2": 5 if d < 3 else 260}), tied(d)])
        for d in range(4)
    }
    _put(warehouse, "events", _events_through({d: days[d] for d in range(3)}))
    first = publish_snapshot(warehouse, ["events"], tmp_path / "a", "night1")
    _put(warehouse, "events", _events_through(days))
    base = SnapshotBase(first.path, events_since=date(2026, 1, 7))
    incremental = publish_snapshot(warehouse, ["events"], tmp_path / "a", "night2", base=base)
    scratch = publish_snapshot(warehouse, ["events"], tmp_path / "b", "scratch")
    rows = _snapshot_rows(incremental.path)
    assert rows == _snapshot_rows(scratch.path)
    per_user: dict[str, int] = {}
    for row in rows["events"]:
        per_user[row[1]] = per_user.get(row[1], 0) + 1
    assert per_user == dict.fromkeys(["u1", "u2", "u3"], RECENT_EVENTS_PER_USER)


def test_a_rewritten_day_with_fewer_events_rebuilds_what_the_limit_cut(warehouse, tmp_path):
    days = {d: _day_events(d, {"u1": 80}) for d in range(4)}
    _put(warehouse, "events", _events_through(days))
    first = publish_snapshot(warehouse, ["events"], tmp_path / "a", "before")
    # Day 3 re-ingested with 10 events instead of 80: the base cut rows of day 0 that are
    # needed again; the publish must still equal one from scratch.
    days[3] = _day_events(3, {"u1": 10}, tag="r")
    _put(warehouse, "events", _events_through(days))
    base = SnapshotBase(first.path, events_since=date(2026, 1, 8))
    incremental = publish_snapshot(warehouse, ["events"], tmp_path / "a", "after", base=base)
    scratch = publish_snapshot(warehouse, ["events"], tmp_path / "b", "scratch")
    assert _snapshot_rows(incremental.path) == _snapshot_rows(scratch.path)
    assert len(_snapshot_rows(incremental.path)["events"]) == RECENT_EVENTS_PER_USER


def test_unchanged_tables_are_kept_from_the_base(warehouse, tmp_path):
    _put(warehouse, "users", _users(5))
    _put(warehouse, "pages", pl.DataFrame({"page_id": ["p1"], "title": ["One"]}))
    first = publish_snapshot(warehouse, ["users", "pages"], tmp_path, "one")
    # The warehouse's users change, but the caller says they were not rewritten since: the
    # base's copy is what is served (the caller's knowledge is the contract).
    _put(warehouse, "users", _users(9))
    base = SnapshotBase(first.path, unchanged=frozenset({"users"}))
    second = publish_snapshot(warehouse, ["users", "pages"], tmp_path, "two", base=base)
    with open_reader(tmp_path) as r:
        assert r.snapshot_id == second.snapshot_id
        assert r.scalar("SELECT count(*) FROM users") == 5
        assert r.scalar("SELECT count(*) FROM pages") == 1


def test_many_nights_of_appends_stay_equal_and_clustered(warehouse, tmp_path):
    users = {f"u{i:03d}": 3 + i % 4 for i in range(300)}
    days = {d: _day_events(d, users) for d in range(25)}
    _put(warehouse, "events", _events_through({0: days[0]}))
    previous = publish_snapshot(warehouse, ["events"], tmp_path / "a", "n00")
    for night in range(1, 25):
        _put(warehouse, "events", _events_through({d: days[d] for d in range(night + 1)}))
        since = date(2026, 1, 5) + timedelta(days=night - 1)
        base = SnapshotBase(previous.path, events_since=since)
        previous = publish_snapshot(
            warehouse, ["events"], tmp_path / "a", f"n{night:02d}", base=base
        )
    scratch = publish_snapshot(warehouse, ["events"], tmp_path / "b", "scratch")
    assert _snapshot_rows(previous.path) == _snapshot_rows(scratch.path)
    with duckdb.connect(str(previous.path), read_only=True) as con:
        groups = con.execute(
            "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('events')"
        ).fetchone()[0]
    assert groups <= 4  # appends are reclustered before lookups read many row groups


def test_the_asset_publishes_from_the_snapshot_it_published_last(tmp_path, monkeypatch):
    snaps = tmp_path / "snapshots"
    monkeypatch.setenv("UBAP_SNAPSHOT_DIR", str(snaps))
    db = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:
        _put(con, "users", _users(6))
        _put(con, "events", _events_through({d: _day_events(d, {"u1": 2}) for d in range(3)}))
    instance = dg.DagsterInstance.ephemeral()
    first = dg.materialize([serving_snapshot], resources=_resources(db), instance=instance)
    second = dg.materialize([serving_snapshot], resources=_resources(db), instance=instance)
    notes = [
        r.asset_materializations_for_node("serving_snapshot")[0].metadata["built"].value
        for r in (first, second)
    ]
    assert notes[0].startswith("no snapshot in service")
    assert "2 tables unchanged" in notes[1] and "recent events unchanged" in notes[1]
    with open_reader(snaps) as r:
        assert r.scalar("SELECT count(*) FROM users") == 6
        assert r.scalar("SELECT count(*) FROM events") == 6
        assert r.meta().run_id == second.run_id
    # Another instance did not publish the snapshot in service: everything is copied.
    third = dg.materialize(
        [serving_snapshot], resources=_resources(db), instance=dg.DagsterInstance.ephemeral()
    )
    meta = third.asset_materializations_for_node("serving_snapshot")[0].metadata
    assert "not published by this instance" in meta["built"].value
