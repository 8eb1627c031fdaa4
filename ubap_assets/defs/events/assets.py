"""The behaviour data: users, the page catalogue, events, rejects and the generator's truth."""

from datetime import UTC, date, datetime, time, timedelta

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ubap_assets.core import synthetic
from ubap_assets.core.catalogue import page_catalogue
from ubap_assets.core.schema import (
    EVENT_REJECTS_SCHEMA,
    INJECTED_ANOMALIES_SCHEMA,
    USER_PERSONAS_SCHEMA,
    empty,
)
from ubap_assets.defs.events import settings
from ubap_assets.defs.events.checks import event_check_results, event_check_specs, hash_slices
from ubap_assets.defs.events.partitions import LOAD_PROBLEMS, daily_partitions
from ubap_assets.defs.events.world import resolve
from ubap_assets.engines import lake, uses_spark
from ubap_assets.lib.metadata import markdown_preview
from ubap_assets.lib.prefetch import prefetched
from ubap_assets.lib.run_partitions import days_of_run
from ubap_assets.lib.warehouse_io import replace_window
from ubap_assets.settings import SYNTHETIC, current_settings, settings_problems
from ubap_assets.warehouse.introspect import table_exists
from ubap_assets.warehouse.paths import lake_dir
from ubap_assets.warehouse.tables import EVENTS

GROUP = "events"
OWNERS = ["team:data-platform"]


def _fail_on(problems) -> None:
    if problems:
        raise dg.Failure(
            description="Invalid configuration: " + "; ".join(problems),
            metadata={"fix": "correct the run config or the UBAP_* environment variables"},
        )


class SourceConfig(dg.Config):
    """Where the events come from. Defaults come from the UBAP_* environment variables."""

    source: str = Field(
        default_factory=settings.default_source,
        description="'synthetic' for the built-in generator, or a folder/glob of event files.",
    )
    mapping: str = Field(
        default_factory=settings.default_mapping,
        description="For files: '' (native schema), a built-in mapping name or a mapping file.",
    )
    users: int = Field(
        default_factory=settings.default_users, description="Synthetic users in the population."
    )
    days: int = Field(
        default_factory=settings.history_days,
        description=(
            "Days of the synthetic world's first history (they shape the population and the "
            "planted anomalies); the world then grows a day each night."
        ),
    )
    seed: int = Field(default_factory=settings.default_seed, description="Generator seed.")
    max_reject_share: float = Field(
        default_factory=settings.default_max_reject_share,
        description="Fail ingestion when more than this share of rows is rejected.",
    )

    @property
    def is_synthetic(self) -> bool:
        return self.source == SYNTHETIC

    def check(self) -> None:
        """Fail the run (dg.Failure, one line per problem naming the variable or field and the
        fix) when the run config or the UBAP_* environment variables are invalid."""
        problems = []
        if self.users < 1:
            problems.append(f"users must be at least 1 (got {self.users})")
        if self.days < 1:
            problems.append(f"days must be at least 1 (got {self.days})")
        if self.seed < 0:
            problems.append(f"seed must be zero or more (got {self.seed})")
        if not 0 <= self.max_reject_share <= 1:
            problems.append(f"max_reject_share must be in [0, 1] (got {self.max_reject_share})")
        problems.extend(settings_problems())
        _fail_on(problems)

    def world(self) -> synthetic.WorldSpec:
        """The generator's spec of the pinned world (recorded the first time), or a dg.Failure
        naming the bad field, variable or the difference from the recorded world."""
        self.check()
        resolved = resolve(current_settings(), users=self.users, seed=self.seed, days=self.days)
        _fail_on(resolved.problems)
        return synthetic.WorldSpec(
            users=self.users,
            days=self.days,
            seed=self.seed,
            start_date=resolved.world.first_day,
            anomalies=current_settings().plant_anomalies,
        )

    def ingest(self, **window):
        """Read the event files (the whole source, or one time window of it)."""
        from ubap_assets.core.ingest import IngestError, ingest_files, source_settings

        try:
            env = source_settings()
            named = self.source.lower() in ("inbox", "files")
            source = env.path if named and env.path else self.source
            return ingest_files(
                source,
                self.mapping or None,
                max_reject_share=self.max_reject_share,
                pages_file=env.pages_file,
                **window,
            )
        except IngestError:
            raise
        except (FileNotFoundError, ValueError) as err:
            raise dg.Failure(
                description=(
                    f"Invalid source configuration: source={self.source!r} is neither "
                    f"'synthetic' nor readable event files ({err})"
                ),
                metadata={
                    "fix": "set UBAP_SOURCE (or the run config's source) to 'synthetic', "
                    "'inbox' or a folder/glob of CSV, Parquet or JSON Lines files"
                },
            ) from err


def planted_anomalies(
    spec: synthetic.WorldSpec, run_days: list[date], warehouse: DuckDBResource
) -> tuple[pl.DataFrame, str]:
    """The generator's planted anomalies on exactly the days whose events are stored or are
    generated by this run, so the ground truth grows with the nightly runs and never names a
    day whose events were generated without it; and a note of the days covered.

    Only the planted days are looked up in the stored events (one bounded probe each, which
    the engine answers from the few row groups of that day), not a DISTINCT over every event."""
    days = {d for d in run_days if d >= spec.start_date}
    stored_first = stored_last = None
    with warehouse.get_connection() as con:
        if table_exists(con, EVENTS):
            stored_first, stored_last = con.execute(
                f"SELECT min(event_ts)::DATE, max(event_ts)::DATE FROM {EVENTS}"
            ).fetchone()
        span = sorted(days | {d for d in (stored_first, stored_last) if d is not None})
        span = [d for d in span if d >= spec.start_date]
        if not span:
            return empty(INJECTED_ANOMALIES_SCHEMA), "no day yet"
        plan = synthetic.anomaly_plan(spec, through=span[-1])
        for day in plan["anomaly_date"].unique().to_list():
            if day in days or stored_first is None or not stored_first <= day <= stored_last:
                continue
            midnight = datetime.combine(day, time(0))
            stored = con.execute(
                f"SELECT EXISTS (SELECT 1 FROM {EVENTS} WHERE event_ts >= ? AND event_ts < ?)",
                [midnight, midnight + timedelta(days=1)],
            ).fetchone()[0]
            if stored:
                days.add(day)
    covered = f"{span[0]} .. {span[-1]}"
    return plan.filter(pl.col("anomaly_date").is_in(sorted(days))), covered


# What only the synthetic generator knows; scoring assets read it, nothing serves it.
GROUND_TRUTH = "ground_truth"


def _source_table(description: str, group: str = GROUP) -> dg.AssetOut:
    """One unpartitioned table of the source, in this stage's group unless told otherwise."""
    return dg.AssetOut(
        description=description, group_name=group, owners=OWNERS, kinds={"polars", "duckdb"}
    )


@dg.multi_asset(
    outs={
        "users": _source_table(
            "One row per user: signup date, country, usual device and traffic source."
        ),
        "pages": _source_table(
            "One row per page of the catalogue: url, title, description, category."
        ),
        "user_personas": _source_table(
            "Ground truth, one row per synthetic user: latent persona, favourite category and "
            "true 14-day purchase propensity. Only scoring assets read it; never served; "
            "empty for ingested data.",
            GROUND_TRUTH,
        ),
        "injected_anomalies": _source_table(
            "Ground truth, one row per anomaly the generator planted on a day of the stored "
            "events. Only scoring assets read it; never served; empty for ingested data.",
            GROUND_TRUTH,
        ),
        "event_rejects": _source_table(
            "One row per ingested row that failed validation, with its reason."
        ),
    },
)
def behaviour_source(
    context: dg.AssetExecutionContext, config: SourceConfig, warehouse: DuckDBResource
):
    """The unpartitioned tables of the source: users, pages, ground truth and rejects."""
    if config.is_synthetic:
        spec = config.world()
        pop = synthetic.population(spec)
        users = synthetic.users_frame(spec, pop)
        pages = page_catalogue()
        personas = synthetic.personas_frame(spec, pop)
        anomalies, covered = planted_anomalies(spec, days_of_run(context.run.tags), warehouse)
        rejects = empty(EVENT_REJECTS_SCHEMA)
        note = (
            f"synthetic world from {spec.start_date}: {spec.users} users, seed {spec.seed}, "
            f"first history {spec.days} days; ground truth over {covered}"
        )
    else:
        from ubap_assets.core.ingest import IngestError

        config.check()
        try:
            result = config.ingest()
        except IngestError as err:
            # Publish the rejects of a failed ingestion: that is when people need to see them.
            if err.result is not None:
                yield dg.Output(err.result.rejects, "event_rejects")
            raise dg.Failure(description=f"Ingesting {config.source!r} failed: {err}") from err
        users, pages, rejects = result.users, result.pages, result.rejects
        personas, anomalies = empty(USER_PERSONAS_SCHEMA), empty(INJECTED_ANOMALIES_SCHEMA)
        note = f"files: {len(result.files)} read from {config.source}; no ground truth"
    context.log.info(note)
    yield dg.Output(users, "users", metadata={"source": note, "preview": markdown_preview(users)})
    yield dg.Output(pages, "pages", metadata={"source": note, "preview": markdown_preview(pages)})
    yield dg.Output(personas, "user_personas", metadata={"source": note})
    yield dg.Output(
        anomalies,
        "injected_anomalies",
        metadata={"source": note, "preview": markdown_preview(anomalies, 20)},
    )
    yield dg.Output(
        rejects,
        "event_rejects",
        metadata={
            "source": note,
            "rejected_rows": rejects.height,
            "reasons": dg.MetadataValue.json(
                dict(rejects.group_by("reason").len().iter_rows()) if rejects.height else {}
            ),
        },
    )


def _load_note() -> dict[str, str]:
    # Shown on the asset in the UI when the code location loaded with a bad setting.
    return {"configuration_error": " | ".join(LOAD_PROBLEMS)} if LOAD_PROBLEMS else {}


@dg.asset(
    partitions_def=daily_partitions,
    # a week of days per run on Spark (the lake takes a writer per day), one ranged run on DuckDB
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=7)
    if uses_spark()
    else dg.BackfillPolicy.single_run(),
    metadata={"partition_expr": "event_ts", **_load_note()},
    group_name=GROUP,
    owners=OWNERS,
    kinds={"polars", "parquet"} if uses_spark() else {"polars", "duckdb"},
    check_specs=event_check_specs(),
)
def events(
    context: dg.AssetExecutionContext, config: SourceConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One row per event (page_view ... purchase), partitioned by the day of event_ts (UTC).

    Each run overwrites its day partitions whole in one transaction, a day at a time, so
    re-materializing a day gives the same rows and memory stays at one day of events.
    """
    window = context.partition_time_window
    start = window.start.astimezone(UTC).replace(tzinfo=None)
    end = window.end.astimezone(UTC).replace(tzinfo=None)
    stats: dict[str, int] = {}
    if config.is_synthetic:
        spec = config.world()
        # the next day is generated while the engine writes this one
        chunks = prefetched(
            synthetic.events_by_day(spec, start.date(), end.date() - timedelta(days=1))
        )
    else:
        from ubap_assets.core.ingest import IngestError

        config.check()
        try:
            result = config.ingest(start=start, end=end)
        except IngestError as err:
            raise dg.Failure(description=f"Ingesting {config.source!r} failed: {err}") from err
        chunks, stats = iter([result.events]), result.stats
    outside = {"rows": 0}

    def inside_window(frames):
        for frame in frames:
            keep = frame.filter((pl.col("event_ts") >= start) & (pl.col("event_ts") < end))
            outside["rows"] += frame.height - keep.height
            yield keep

    # With UBAP_ENGINE=spark the events are the lake's day folders (the warehouse sees them as a
    # view) and this step never opens the warehouse, so backfill runs can go side by side.
    reading = lake.reader(lake_dir()) if uses_spark() else warehouse.get_connection()
    with reading as con:
        if uses_spark():
            written = lake.write_days(
                lake_dir(), EVENTS, inside_window(chunks), "event_ts", start.date(), end.date()
            )
            lake.attach_views(con, lake_dir())
        else:
            written = replace_window(con, EVENTS, inside_window(chunks), "event_ts", start, end)
        checks = list(event_check_results(con, start, end, outside["rows"]))
        summary = con.execute(
            "SELECT count(DISTINCT event_ts::DATE), count(DISTINCT user_id), "
            "coalesce(sum(revenue), 0) FROM events WHERE event_ts >= ? AND event_ts < ?",
            [start, end],
        ).fetchone()
        # sessions in slices of their id's hash: one slice of a long backfill's ids at a time
        sessions = sum(
            con.execute(
                "SELECT count(DISTINCT session_id) FROM events "
                f"WHERE event_ts >= ? AND event_ts < ?{part}",
                [start, end, *args],
            ).fetchone()[0]
            for part, args in hash_slices("session_id", written)
        )
        total = con.execute("SELECT count(*) FROM events").fetchone()[0]
    days, users, revenue = summary
    return dg.MaterializeResult(
        metadata={
            "window": f"{start:%Y-%m-%d} .. {end - timedelta(days=1):%Y-%m-%d}",
            "rows_written": written,
            "dagster/row_count": total,
            "days_with_events": days,
            "users": users,
            "sessions": sessions,
            "revenue": float(revenue),
            **{f"ingest_{k}": v for k, v in stats.items()},
        },
        check_results=checks,
    )
