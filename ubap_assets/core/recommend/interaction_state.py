"""The served model's interactions from a running total, so a night's cost does not grow with
the history.

Dagster-free. ``rec_interaction_state`` holds, per (user, page, decay period), the exact
fixed-point sums (``interactions.FIXED_POINT_BITS``) of every day before its *cut*; a night
reads them plus the days from the cut to the data end from ``user_page_daily`` and combines the
two as ``load_interactions`` combines the whole history. Integer sums do not depend on how they
are split, so the weights are the same bits as a full recompute.

The cut is the start of the Monday-anchored week at least ``RECENT_DAYS`` before the data end:
the state is rewritten once a week (that week folded in), and the days a night rewrites
(yesterday and the day before) are always after it. ``rec_interaction_state_meta`` (one row)
records the knobs the sums were built with, the cut, and the rows and events of
``user_page_daily`` before the cut. The state is rebuilt from the whole history when the knobs
that shape it changed (half-life, event weights, conversion events), when the run rewrote a day
before the cut (late data, a backfill), or when the days before the cut no longer hold the rows
and events it was built from (a day rewritten by a run without the recommender).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import duckdb
import polars as pl

from ubap_assets.core.cadence import EPOCH_MONDAY
from ubap_assets.core.recommend.interactions import (
    FIXED_POINT_BITS,
    INTERACTIONS_TABLE,
    PERIOD_DOUBLINGS,
    Interactions,
    coded_interactions,
    combine_periods_sql,
    first_day,
    load_interactions,
    load_training,
    midnight,
    period_sums_sql,
)
from ubap_assets.core.recommend.params import RecommendationError, RecommenderParams
from ubap_assets.core.recommend.texts import Catalogue
from ubap_assets.warehouse import tables
from ubap_assets.warehouse.introspect import table_columns, table_exists

STATE_TABLE = tables.REC_INTERACTION_STATE
META_TABLE = tables.REC_INTERACTION_STATE_META
# The nightly run rewrites yesterday and the day before: the cut stays before both.
RECENT_DAYS = 3
FOLD_DAYS = 7
STATE_VERSION = 1


def state_cut(end: date) -> date:
    """The state's cut for data ending at ``end`` (exclusive): the start of the Monday-anchored
    week that holds the day ``RECENT_DAYS`` before ``end``."""
    weeks = (end - timedelta(days=RECENT_DAYS) - EPOCH_MONDAY).days // FOLD_DAYS
    return EPOCH_MONDAY + timedelta(days=weeks * FOLD_DAYS)


def state_signature(params: RecommenderParams) -> str:
    """The knobs the stored sums depend on, as a stable string."""
    return json.dumps(
        {
            "version": STATE_VERSION,
            "fixed_point_bits": FIXED_POINT_BITS,
            "period_doublings": PERIOD_DOUBLINGS,
            "half_life_days": params.half_life_days,
            "event_weights": sorted(params.event_weights.items()),
            "conversion_events": sorted(params.conversion_events),
        },
        sort_keys=True,
    )


@dataclass(frozen=True)
class Resumed:
    """How the state served a read."""

    cut: date
    rebuilt: str  # why the state was rebuilt from the whole history ("" when it was not)
    folded_days: int  # days added to the state in this call
    recent_days: int  # days read from user_page_daily after the cut

    @property
    def note(self) -> str:
        how = f"rebuilt ({self.rebuilt})" if self.rebuilt else "resumed"
        return (
            f"interactions: running state {how}, cut {self.cut}, {self.folded_days} days folded "
            f"in, {self.recent_days} recent days read from {INTERACTIONS_TABLE}"
        )


@dataclass(frozen=True)
class StateRead(Resumed):
    """The interactions (``load_interactions``'s rows) and how the state served them."""

    frame: pl.DataFrame


def _digest(con: duckdb.DuckDBPyConnection, cut: date) -> tuple[int, int]:
    """Rows and events of ``user_page_daily`` before ``cut``."""
    rows, events = con.execute(
        f"SELECT count(*), coalesce(sum(events), 0)::BIGINT FROM {INTERACTIONS_TABLE} "
        "WHERE day < ?",
        [cut],
    ).fetchone()
    return int(rows), int(events)


def training_at_cut(
    con: duckdb.DuckDBPyConnection,
    params: RecommenderParams,
    catalogue: Catalogue,
    stored: dict,
) -> Interactions | None:
    """The training matrices of every day before the cut of the state ``stored``
    (``stored_state``), decayed to the cut (``load_training(con, None, cut, ...)``, read from
    the state alone); None when the state holds no day yet."""
    first = first_day(con)
    if first is None or stored["cut"] <= first:
        return None
    if stored["signature"] != state_signature(params):
        raise RecommendationError("the running state was built with other knobs: read it first")
    state = (f"SELECT user_id, page_id, period, mass, n_events, converted FROM {STATE_TABLE}", [])
    combined = combine_periods_sql(state, params, first, stored["cut"])
    return coded_interactions(con, combined, catalogue, params.strength)


def stored_state(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The state's knobs (``signature``), ``cut``, the rows and events of ``user_page_daily``
    it was built from (``digest``) and a ``fingerprint`` of its sums; None when there is none."""
    if not (table_exists(con, META_TABLE) and table_exists(con, STATE_TABLE)):
        return None
    if "fingerprint" not in table_columns(con, META_TABLE):  # an older version's: rebuilt
        return None
    rows = con.execute(
        f"SELECT signature, cut, source_rows, source_events, fingerprint FROM {META_TABLE}"
    ).fetchall()
    if len(rows) != 1:
        return None
    signature, cut, source_rows, source_events, fingerprint = rows[0]
    return {
        "signature": signature,
        "cut": cut,
        "digest": (source_rows, source_events),
        "fingerprint": fingerprint,
    }


def _why_rebuild(
    con: duckdb.DuckDBPyConnection,
    stored: dict | None,
    signature: str,
    cut: date,
    changed_from: date | None,
) -> str:
    """Why the stored state cannot be resumed ("" when it can)."""
    if stored is None:
        return "no stored state"
    if stored["signature"] != signature:
        return "other knobs (half-life, event weights or conversion events)"
    if stored["cut"] > cut:
        return f"stored cut {stored['cut']} is after this run's cut {cut}"
    if changed_from is None:
        return "the run does not say which days it rewrote"
    if changed_from < stored["cut"]:
        return f"the run rewrote {changed_from}, before the stored cut {stored['cut']}"
    if _digest(con, stored["cut"]) != tuple(stored["digest"]):
        return f"{INTERACTIONS_TABLE} changed before the stored cut {stored['cut']}"
    return ""


def interactions_from_state(
    con: duckdb.DuckDBPyConnection,
    end: datetime,
    params: RecommenderParams,
    changed_from: date | None,
) -> StateRead:
    """``load_interactions(con, None, end, params)``, the same bits, from the running state:
    fold the days up to the cut into it when the cut moved (rewriting it), then add the recent
    days. ``changed_from``: the first day the run rewrote in ``user_page_daily`` (None when
    unknown: the state is rebuilt). The knobs must not set ``history_days`` (a window is a
    bounded read: use ``load_interactions``)."""
    combined, resumed = _resume(con, end, params, changed_from)
    frame = con.execute(*combined).pl() if combined else load_interactions(con, None, end, params)
    return StateRead(**vars(resumed), frame=frame)


def training_from_state(
    con: duckdb.DuckDBPyConnection,
    end: datetime,
    params: RecommenderParams,
    changed_from: date | None,
    catalogue: Catalogue,
) -> tuple[Interactions, str]:
    """``interactions_from_state`` as training matrices (numbered in SQL, see
    ``load_training``), with the note saying how the state served them."""
    combined, resumed = _resume(con, end, params, changed_from)
    if not combined:
        return load_training(con, None, end, params, catalogue), resumed.note
    return coded_interactions(con, combined, catalogue, params.strength), resumed.note


def _resume(
    con: duckdb.DuckDBPyConnection,
    end: datetime,
    params: RecommenderParams,
    changed_from: date | None,
) -> tuple[tuple[str, list[object]] | None, Resumed]:
    """Bring the state to this run's cut; the SQL (and arguments) of the combined interactions
    (None when there is no data) and how the state served them."""
    if params.history_days is not None:
        raise RecommendationError(
            f"history_days = {params.history_days} is a window, read directly (no running "
            "state): call load_interactions / load_training with its start"
        )
    end_day = midnight(end, "end").date()
    first = first_day(con)
    cut = state_cut(end_day)
    if first is None:
        return None, Resumed(cut, "no data", 0, 0)
    signature = state_signature(params)
    stored = stored_state(con)
    rebuilt = _why_rebuild(con, stored, signature, cut, changed_from)
    folded_from = first if rebuilt else stored["cut"]
    folded_days = max(0, (cut - folded_from).days)
    if rebuilt or folded_days:
        _fold(con, params, signature, None if rebuilt else stored, cut)
    sums = period_sums_sql(params, cut, end_day)
    union = (
        f"SELECT user_id, page_id, period, mass, n_events, converted FROM {STATE_TABLE} "
        f"UNION ALL {sums[0]}",
        sums[1],
    )
    recent = max(0, (end_day - max(cut, first)).days)
    combined = combine_periods_sql(union, params, first, end_day)
    return combined, Resumed(cut, rebuilt, folded_days, recent)


def _fold(
    con: duckdb.DuckDBPyConnection,
    params: RecommenderParams,
    signature: str,
    stored: dict | None,
    cut: date,
) -> None:
    """Rewrite the state as the sums of every day before ``cut``: the stored sums plus the
    days from the stored cut (``stored`` None: from the first day), in one transaction."""
    start = stored["cut"] if stored else None
    sums_sql, sums_args = period_sums_sql(params, start, cut)
    previous = (
        f"SELECT user_id, page_id, period, mass, n_events, converted FROM {STATE_TABLE} UNION ALL "
        if stored
        else ""
    )
    digest = _digest(con, cut)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"CREATE OR REPLACE TABLE {STATE_TABLE} AS "
            "SELECT user_id, page_id, period, sum(mass)::HUGEINT AS mass, "
            "sum(n_events)::BIGINT AS n_events, bool_or(converted) AS converted "
            f"FROM ({previous}{sums_sql}) GROUP BY user_id, page_id, period",
            sums_args,
        )
        # What the sums hold, whatever the runs that wrote them: the item graph's key.
        count, mixed = con.execute(
            f"SELECT count(*), coalesce(bit_xor(hash(user_id, page_id, period, mass, n_events, "
            f"converted)), 0) FROM {STATE_TABLE}"
        ).fetchone()
        con.execute(
            f"CREATE OR REPLACE TABLE {META_TABLE} (signature VARCHAR, cut DATE, "
            "source_rows BIGINT, source_events BIGINT, fingerprint VARCHAR)"
        )
        con.execute(
            f"INSERT INTO {META_TABLE} VALUES (?, ?, ?, ?, ?)",
            [signature, cut, *digest, f"{count}:{mixed}"],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
