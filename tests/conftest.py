"""Shared fixtures. The environment is pinned before any ubap module is imported, so the
partitions, the data directory and the synthetic world are the same on every machine."""

import os
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

TEST_START = date(2026, 1, 5)  # a Monday
TEST_DAYS = 42
TEST_USERS = 800
TEST_SEED = 3

_SESSION_DATA = Path(tempfile.mkdtemp(prefix="ubap-tests-"))
os.environ.update(
    {
        "UBAP_DATA_DIR": str(_SESSION_DATA),
        "UBAP_START_DATE": TEST_START.isoformat(),
        "UBAP_HISTORY_DAYS": str(TEST_DAYS),
        "UBAP_USERS": str(TEST_USERS),
        "UBAP_SEED": str(TEST_SEED),
        "UBAP_SOURCE": "synthetic",
        # Shorter than the world: the segment tables' window slides across the nightly runs.
        "UBAP_SEGMENT_TREND_DAYS": "28",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
)
for _var in (
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "UBAP_API_TOKEN",
    "UBAP_WAREHOUSE",
    "UBAP_SNAPSHOT_DIR",
    "UBAP_SOURCE_MAPPING",
):
    os.environ.pop(_var, None)


def world_db(world) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse holding a synthetic world's tables (feature and leakage tests) and
    the daily intermediates built from them (sessions, user_daily, page_daily, user_page_daily)."""
    from ubap_assets.core.daily import build_all_daily

    con = duckdb.connect()
    for table, frame in (
        ("users", world.users),
        ("pages", world.pages),
        ("events", world.events),
        ("user_personas", world.personas),
    ):
        con.register("incoming", frame)
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM incoming")
        con.unregister("incoming")
    build_all_daily(con)
    return con


def world_until(world, end, whole_sessions: bool) -> duckdb.DuckDBPyConnection:
    """``world_db`` of the world's events before ``end``; with ``whole_sessions``, every event
    of the sessions that start before it (the data once the day after ``end`` is in)."""
    import polars as pl

    events = world.events
    if whole_sessions:
        starts = events.group_by("session_id").agg(pl.col("event_ts").min().alias("start"))
        kept = starts.filter(pl.col("start") < end)["session_id"]
        events = events.filter(pl.col("session_id").is_in(kept.implode()))
    else:
        events = events.filter(pl.col("event_ts") < end)
    return world_db(type(world)(world.users, world.pages, events, world.personas, world.anomalies))


@pytest.fixture(scope="session")
def tiny_spec():
    from ubap_assets.core.synthetic import WorldSpec

    return WorldSpec(users=TEST_USERS, days=TEST_DAYS, seed=TEST_SEED, start_date=TEST_START)


# The sample serving snapshot the API tests read (tests.api_sample), published once.
SAMPLE_SNAPSHOT_ID = "test-api-1"


@pytest.fixture(scope="session")
def sample_snapshots(tmp_path_factory, tiny_spec) -> Path:
    from tests.api_sample import publish_sample, sample_warehouse

    directory = tmp_path_factory.mktemp("api") / "snapshots"
    with duckdb.connect(str(sample_warehouse(tiny_spec))) as con:
        publish_sample(con, directory, SAMPLE_SNAPSHOT_ID)
    return directory


@pytest.fixture(scope="session")
def tiny_world(tiny_spec):
    """A small synthetic world (800 users x 42 days) as polars frames."""
    from ubap_assets.core.synthetic import generate_world

    return generate_world(tiny_spec)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A private data directory for one test (warehouse, snapshots, models)."""
    monkeypatch.setenv("UBAP_DATA_DIR", str(tmp_path))
    return tmp_path


@dataclass(frozen=True)
class MaterializedGraph:
    data_dir: Path
    result: object  # dg.ExecuteInProcessResult
    job: object  # dg.JobDefinition

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshots"


@pytest.fixture(scope="session")
def materialized_graph(tmp_path_factory) -> MaterializedGraph:
    """The whole graph materialized once, on the tiny world, into its own data directory.

    Shared by the end-to-end test and the tests that serve its snapshot, so the API and the
    dashboard are also tested on what the pipeline really publishes.
    """
    import dagster as dg

    from ubap_assets.definitions import defs

    data = tmp_path_factory.mktemp("pipeline")
    previous = os.environ["UBAP_DATA_DIR"]
    os.environ["UBAP_DATA_DIR"] = str(data)
    try:
        last = TEST_START + timedelta(days=TEST_DAYS - 1)
        job = defs().resolve_job_def("refresh_job")
        result = job.execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            tags={
                "dagster/asset_partition_range_start": TEST_START.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat(),
            },
            raise_on_error=False,
        )
    finally:
        os.environ["UBAP_DATA_DIR"] = previous
    return MaterializedGraph(data, result, job)
