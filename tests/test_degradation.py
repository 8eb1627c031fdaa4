"""Graceful degradation: one failing step never takes the unrelated ones, or the snapshot, down."""

import gc

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource


def _project_resources(data_dir) -> dict:
    from ubap_assets.defs.resources import resources

    return dict(resources().resources)


def test_a_failed_step_leaves_later_steps_connections_working(data_dir):
    """A step that fails inside `warehouse.get_connection()` leaves its connection in a reference
    cycle (its traceback) until the garbage collector runs; the collector is paused here to make
    that moment deterministic. Later steps, through the IO manager and through the resource,
    must still connect."""

    @dg.asset
    def fails_holding_a_connection(warehouse: DuckDBResource) -> None:
        with warehouse.get_connection() as con:
            con.execute("CREATE TABLE IF NOT EXISTS scratch AS SELECT 1 AS x")
            raise ValueError("single class in the training labels")

    @dg.asset
    def unrelated_frame() -> pl.DataFrame:
        return pl.DataFrame({"day": ["2026-01-05"], "sessions": [3]})

    @dg.asset(deps=[unrelated_frame])
    def unrelated_sql(warehouse: DuckDBResource) -> dg.MaterializeResult:
        with warehouse.get_connection() as con:
            total = con.execute("SELECT sum(sessions) FROM unrelated_frame").fetchone()[0]
        return dg.MaterializeResult(metadata={"total": int(total)})

    gc.collect()
    gc.disable()
    try:
        result = dg.materialize(
            [fails_holding_a_connection, unrelated_frame, unrelated_sql],
            resources=_project_resources(data_dir),
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    finally:
        gc.enable()
    assert [e.step_key for e in result.get_step_failure_events()] == ["fails_holding_a_connection"]
    assert result.asset_materializations_for_node("unrelated_sql")[0].metadata["total"].value == 3
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT sessions FROM unrelated_frame").fetchone() == (3,)
