"""A refresh while the API is under load: zero errors, and every response from one whole
snapshot (the real events assets + serving_snapshot, materialized in this process while a
client thread keeps requesting)."""

import threading
from datetime import timedelta

import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource
from fastapi.testclient import TestClient

from ubap_api.main import create_app
from ubap_api.settings import Settings
from ubap_assets.defs.events.assets import behaviour_source, events
from ubap_assets.defs.events.settings import history_start
from ubap_assets.defs.serving.assets import serving_snapshot
from ubap_assets.lib.warehouse_io import DuckDBWarehouseIOManager
from ubap_assets.warehouse.paths import snapshot_dir, warehouse_path
from ubap_assets.warehouse.reader import SnapshotReader, open_reader
from ubap_assets.warehouse.snapshots import Snapshot, list_snapshots

KEEP_ALL = {"ops": {"serving_snapshot": {"config": {"keep": 10}}}}


def _refresh(first_day: int, last_day: int, instance: dg.DagsterInstance) -> str:
    """Materialize users/pages + events for days [first_day, last_day] + a new snapshot."""
    database = str(warehouse_path())
    start = history_start() + timedelta(days=first_day)
    end = history_start() + timedelta(days=last_day)
    result = dg.materialize(
        [behaviour_source, events, serving_snapshot],
        resources={
            "io_manager": DuckDBWarehouseIOManager(database=database),
            "warehouse": DuckDBResource(database=database),
        },
        instance=instance,
        run_config=KEEP_ALL,
        tags={
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
        },
    )
    assert result.success
    return result.run_id


@pytest.mark.slow
def test_refresh_under_load_costs_zero_errors(data_dir):
    instance = dg.DagsterInstance.ephemeral()
    warehouse_path().parent.mkdir(parents=True, exist_ok=True)
    _refresh(0, 2, instance)
    with open_reader() as r:
        first_id = r.snapshot_id
        user_id = r.scalar(
            "SELECT user_id FROM events GROUP BY 1 ORDER BY count(*) DESC, user_id LIMIT 1"
        )

    responses: list[tuple[str, int, str, dict]] = []
    stop = threading.Event()
    app = create_app(Settings(snapshot_dir=snapshot_dir()))

    def hammer() -> None:
        with TestClient(app) as client:
            while not stop.is_set():
                for path in ("/api/meta", f"/api/users/{user_id}?activity=50", "/health"):
                    r = client.get(path)
                    responses.append((path, r.status_code, r.headers["X-UBAP-Snapshot"], r.json()))

    client_thread = threading.Thread(target=hammer)
    client_thread.start()
    try:
        for first, last in ((3, 5), (6, 8)):
            _refresh(first, last, instance)
    finally:
        stop.set()
        client_thread.join(timeout=60)

    assert responses, "the client made no requests"
    errors = [(p, code, body) for p, code, _, body in responses if code != 200]
    assert not errors, errors[:3]
    seen = {snap for _, _, snap, _ in responses}
    published = {s.snapshot_id for s in list_snapshots(snapshot_dir())}
    assert len(published) == 3 and seen <= published
    assert len(seen) >= 2, f"the refresh did not happen under load (saw only {seen})"
    assert first_id in seen
    print(f"{len(responses)} responses during 2 refreshes, {len(seen)} snapshots seen, 0 errors")

    # Whole snapshots only: each body equals what its own snapshot says.
    truth: dict[str, tuple] = {}
    for snap in published:
        with SnapshotReader(Snapshot(snap, snapshot_dir() / f"{snap}.duckdb")) as r:
            latest, n = r.rows(
                "SELECT max(event_ts) AS latest, count(*) AS n FROM events WHERE user_id = ?",
                [user_id],
            )[0].values()
            truth[snap] = (r.meta().data_end.isoformat(), latest.isoformat() + "Z", min(n, 50))
    for path, _, snap, body in responses:
        data_end, latest, n = truth[snap]
        if path == "/api/meta":
            assert body["snapshot_id"] == snap
            assert body["data_end"] == data_end
        elif path.startswith("/api/users/"):
            activity = body["recent_activity"]
            assert len(activity) == n and activity[0]["event_ts"] == latest
        else:
            assert body["snapshot_id"] == snap
