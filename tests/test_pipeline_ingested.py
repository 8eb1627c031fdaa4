"""The whole graph on ingested files (an e-commerce export), not the generator: no
synthetic-only assumption, bad rows quarantined with reasons, ground-truth scores skipped."""

import dagster as dg
import duckdb
import polars as pl
import pytest

from tests.conftest import TEST_DAYS, TEST_START
from ubap_assets.warehouse import tables
from ubap_assets.warehouse.snapshots import current_snapshot


def _ecommerce_export(world, path):
    """The tiny world's product views, carts and purchases in the e-commerce export shape."""
    pages = world.pages.select("page_id", "category", "price")
    rows = (
        world.events.join(pages, on="page_id", how="left")
        .filter(
            ((pl.col("event_type") == "page_view") & pl.col("price").is_not_null())
            | pl.col("event_type").is_in(["add_to_cart", "purchase"])
        )
        .select(
            (pl.col("event_ts").dt.strftime("%Y-%m-%d %H:%M:%S") + " UTC").alias("event_time"),
            pl.col("event_type").replace({"page_view": "view", "add_to_cart": "cart"}),
            pl.col("page_id").alias("product_id"),
            ("shop." + pl.col("category").str.to_lowercase()).alias("category_code"),
            pl.lit("acme").alias("brand"),
            pl.coalesce("revenue", "price").alias("price"),
            "user_id",
            pl.col("session_id").alias("user_session"),
        )
    )
    bad = pl.DataFrame(
        {
            "event_time": ["not a time", "2026-01-07 10:00:00 UTC"],
            "event_type": ["view", "wishlist"],
            "product_id": ["p020", "p020"],
            "category_code": ["shop.laptops"] * 2,
            "brand": ["acme"] * 2,
            "price": [10.0, 10.0],
            "user_id": ["u0000001"] * 2,
            "user_session": ["s-bad"] * 2,
        }
    )
    pl.concat([rows, bad]).write_csv(path)
    return rows.height


@pytest.mark.slow
def test_whole_graph_runs_on_an_ecommerce_export(tiny_world, tmp_path, monkeypatch):
    from datetime import timedelta

    from ubap_assets.definitions import defs

    export = tmp_path / "inbox" / "export.csv"
    export.parent.mkdir()
    good_rows = _ecommerce_export(tiny_world, export)
    monkeypatch.setenv("UBAP_DATA_DIR", str(tmp_path))
    source = {"source": str(export), "mapping": "ecommerce"}
    job = defs().resolve_job_def("refresh_job")
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"behaviour_source": {"config": source}, "events": {"config": source}}},
        tags={
            "dagster/asset_partition_range_start": TEST_START.isoformat(),
            "dagster/asset_partition_range_end": (
                TEST_START + timedelta(days=TEST_DAYS - 1)
            ).isoformat(),
        },
        raise_on_error=False,
    )
    assert result.success, [e.step_key for e in result.get_step_failure_events()]

    # Every good row reaches the warehouse; the snapshot keeps only what readers show.
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute(f"SELECT count(*) FROM {tables.EVENTS}").fetchone()[0] == good_rows
        # Files carry no ground truth: the tables exist, empty.
        for truth in (tables.INJECTED_ANOMALIES, tables.USER_PERSONAS):
            assert con.execute(f"SELECT count(*) FROM {truth}").fetchone()[0] == 0

    snapshot = current_snapshot(tmp_path / "snapshots")
    with duckdb.connect(str(snapshot.path), read_only=True) as con:

        def count(sql: str) -> int:
            return con.execute(sql).fetchone()[0]

        assert 0 < count(f"SELECT count(*) FROM {tables.EVENTS}") <= good_rows
        reasons = {
            r[0].split(":")[0]
            for r in con.execute(f"SELECT reason FROM {tables.EVENT_REJECTS}").fetchall()
        }
        assert reasons == {"bad_timestamp", "unknown_event_type"}
        # Pages and users come from the export itself.
        assert count(f"SELECT count(*) FROM {tables.PAGES}") > 50
        assert count(f"SELECT count(*) FROM {tables.USER_RECOMMENDATIONS}") > 0
        assert count(f"SELECT count(*) FROM {tables.DAILY_TRENDS}") > 0
        # Scores that need the generator's ground truth are skipped, not invented.
        assert (
            count(f"SELECT count(*) FILTER (persona_ari IS NOT NULL) FROM {tables.SEGMENT_SCORES}")
            == 0
        )
        assert (
            count(f"SELECT count(*) FROM {tables.MODEL_METRICS} WHERE model = 'true_propensity'")
            == 0
        )
