"""The users side: implicit feedback read from ``user_page_daily`` into sparse (user, page)
matrices.

Every event on a page adds its event-type weight (view < add_to_cart < purchase), decayed by age
with a half-life (or not at all); a user's preference for a page is log1p of that sum, or 1 for
any weighted event (``strength="binary"``). The whole history is read unless a window is set.

The events arrive as the daily aggregate ``user_page_daily`` (one row per day, user, page and
event type with its event count), so the time resolution is the day: windows start and end at
midnights, and an event's age for the decay is the whole days from its day to the end (an event
on the last day before ``end`` is 1 day old). Nothing here reads the raw ``events``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta

import duckdb
import numpy as np
import polars as pl
import scipy.sparse as sp

from ubap_assets.core.recommend.params import RecommendationError, RecommenderParams
from ubap_assets.core.recommend.texts import Catalogue
from ubap_assets.warehouse import tables
from ubap_assets.warehouse.introspect import table_exists

INTERACTIONS_TABLE = tables.USER_PAGE_DAILY


def data_end(con: duckdb.DuckDBPyConnection) -> datetime:
    """Exclusive end of the data: midnight after the last day in ``user_page_daily``."""
    if not table_exists(con, INTERACTIONS_TABLE):
        raise RecommendationError(
            f"table {INTERACTIONS_TABLE!r} does not exist: materialize it (the daily aggregates "
            "of events) before the recommender"
        )
    last = con.execute(f"SELECT max(day) FROM {INTERACTIONS_TABLE}").fetchone()[0]
    if last is None:
        raise RecommendationError(
            f"{INTERACTIONS_TABLE} has no rows (the events table is empty, or its daily "
            "aggregates were not built): materialize 'events' and the daily tables first"
        )
    return datetime.combine(last, time(0)) + timedelta(days=1)


def history_start(end: datetime, params: RecommenderParams) -> datetime | None:
    """Where the history read for a model ending at ``end`` starts (None: the beginning)."""
    return None if params.history_days is None else end - timedelta(days=params.history_days)


def midnight(moment: datetime, name: str) -> datetime:
    """``moment`` unchanged when it is a midnight; the interactions are daily, so no other time
    can bound them."""
    if moment.time() != time(0):
        raise RecommendationError(
            f"{name} = {moment} is not a midnight: interactions are read by whole days "
            "(user_page_daily), so windows must start and end at 00:00"
        )
    return moment


# Decayed weights are summed as exact integers, so neither the order of a sum (the engine's
# threads) nor its grouping (a stored running total plus the recent days) can change a bit of
# the result. A day's term is its weighted events x 2^((day - anchor) / half_life) x
# 2^FIXED_POINT_BITS, rounded, the anchor being the first day of the day's decay period, which
# is PERIOD_DOUBLINGS half-lives long; a term stays under 2^(FIXED_POINT_BITS + PERIOD_DOUBLINGS)
# per weighted event, far inside a 128-bit integer. Without decay every day is in period 0.
FIXED_POINT_BITS = 32
PERIOD_DOUBLINGS = 48
DAY_ZERO = date(1970, 1, 1)


def decay_period_days(half_life_days: float | None) -> int | None:
    """Days per decay period (None without decay)."""
    if half_life_days is None:
        return None
    return max(1, math.floor(PERIOD_DOUBLINGS * half_life_days))


def decay_period(day: date, half_life_days: float | None) -> int:
    """The decay period ``day`` belongs to."""
    period_days = decay_period_days(half_life_days)
    return 0 if period_days is None else (day - DAY_ZERO).days // period_days


def period_sums_sql(
    params: RecommenderParams, start: date | None, end: date
) -> tuple[str, list[object]]:
    """SQL and its arguments: one row per (user, page, decay period) with events on the days
    in [start, end) (``start`` None: from the first day), as exact fixed-point sums:
    user_id, page_id, period, mass (HUGEINT), n_events, converted. Event types weighted 0 or
    less do not count."""
    period, period_args = _period_sql(params.half_life_days)
    exponent, exponent_args = _exponent_sql(params.half_life_days, "period")
    rows, rows_args = _weighted_rows_sql(params, start, end)
    sql = f"""
        SELECT user_id, page_id, period,
               sum(CAST(round(events * event_weight * pow(2.0, {exponent})) AS HUGEINT))
                   AS mass,
               sum(events)::BIGINT AS n_events,
               bool_or(list_contains(?::VARCHAR[], event_type)) AS converted
        FROM (SELECT *, {period} AS period FROM ({rows}))
        GROUP BY user_id, page_id, period
    """
    args = [*exponent_args, list(params.conversion_events), *period_args, *rows_args]
    return sql, args


def _weighted_rows_sql(
    params: RecommenderParams, start: date | None, end: date
) -> tuple[str, list[object]]:
    """The rows of ``user_page_daily`` on the days in [start, end) whose event type weighs
    more than 0: user_id, page_id, events, event_type, day_number, event_weight."""
    weight_cases = " ".join("WHEN ? THEN ?" for _ in params.event_weights)
    weight_args = [value for pair in params.event_weights.items() for value in pair]
    sql = f"""
        SELECT * FROM (SELECT user_id, page_id, events, event_type,
                              date_diff('day', ?::DATE, day) AS day_number,
                              CASE event_type {weight_cases} ELSE 0.0 END AS event_weight
                       FROM {INTERACTIONS_TABLE}
                       WHERE (?::DATE IS NULL OR day >= ?::DATE) AND day < ?::DATE
                         AND user_id IS NOT NULL AND page_id IS NOT NULL)
        WHERE event_weight > 0
    """
    return sql, [DAY_ZERO, *weight_args, start, start, end]


def _period_sql(half_life_days: float | None) -> tuple[str, list[object]]:
    """A row's decay period from its ``day_number``."""
    period_days = decay_period_days(half_life_days)
    if period_days is None:
        return "0::BIGINT", []
    return "floor(day_number / ?::DOUBLE)::BIGINT", [period_days]


def _exponent_sql(half_life_days: float | None, period: str) -> tuple[str, list[object]]:
    """The exponent of 2 in a row's fixed-point term: FIXED_POINT_BITS plus the half-lives
    from the start of its period (column ``period``) to its day."""
    period_days = decay_period_days(half_life_days)
    if period_days is None:
        return "?::DOUBLE", [float(FIXED_POINT_BITS)]
    return f"?::DOUBLE + (day_number - {period} * ?::BIGINT) / ?::DOUBLE", [
        float(FIXED_POINT_BITS),
        period_days,
        half_life_days,
    ]


def _period_factors(
    half_life_days: float | None, first_day: date, end: date
) -> tuple[list[int], list[float]]:
    """The decay periods from ``first_day`` to the day before ``end``, and the factor that
    turns each period's fixed-point mass into a weight decayed to ``end``."""
    period_days = decay_period_days(half_life_days)
    first, last = (
        decay_period(first_day, half_life_days),
        decay_period(end - timedelta(days=1), half_life_days),
    )
    periods = list(range(first, max(first, last) + 1))
    factors = []
    for period in periods:
        age = 0.0 if period_days is None else (end - DAY_ZERO).days - period * period_days
        half_lives = 0.0 if half_life_days is None else age / half_life_days
        factors.append(2.0 ** -(FIXED_POINT_BITS + half_lives))
    return periods, factors


def _weight_sql(masses: Sequence[str]) -> str:
    """A weight from period masses (columns, in period order) and as many factor arguments:
    each mass becomes a double and the periods are added in order."""
    return " + ".join(f"coalesce({mass}::DOUBLE * ?::DOUBLE, 0.0)" for mass in masses)


def combine_periods_sql(
    sums: tuple[str, list[object]], params: RecommenderParams, first_day: date, end: date
) -> tuple[str, list[object]]:
    """SQL and its arguments that turn period sums (``sums``: SQL and arguments whose rows are
    (user, page, period) sums, a key possibly repeated) into one row per (user, page): weight
    decayed to ``end``, n_events, converted. The integer masses are added first; each period's
    mass then becomes a double and the periods are added in period order, so the weight is
    the same bits however the sums were split. ``first_day``: no row has an earlier day."""
    periods, factors = _period_factors(params.half_life_days, first_day, end)
    masses = ", ".join(
        f"sum(CASE WHEN period = ? THEN mass END) AS mass_{i}" for i in range(len(periods))
    )
    weight = _weight_sql([f"mass_{i}" for i in range(len(periods))])
    sql = f"""
        SELECT user_id, page_id, ({weight})::DOUBLE AS weight, n_events, converted
        FROM (SELECT user_id, page_id, {masses},
                     sum(n_events)::BIGINT AS n_events, bool_or(converted) AS converted
              FROM ({sums[0]})
              GROUP BY user_id, page_id)
    """
    return sql, [*factors, *periods, *sums[1]]


def half_lives_sql(
    params: RecommenderParams,
    half_lives: Sequence[float | None],
    start: date | None,
    end: date,
    first_day: date,
) -> tuple[str, list[object]]:
    """``combine_periods_sql(period_sums_sql(...))`` for several half-lives in one read: one
    row per (user, page) with ``weight_<i>`` decayed under ``half_lives[i]`` (the same bits as
    the single read: the same exact masses per period, added in the same order), n_events and
    converted (which do not depend on the decay)."""
    periods, terms, masses, weights = [], [], [], []
    period_args, term_args, mass_args, weight_args = [], [], [], []
    for i, half_life in enumerate(half_lives):
        period, args = _period_sql(half_life)
        periods.append(f"{period} AS period_{i}")
        period_args.extend(args)
        exponent, args = _exponent_sql(half_life, f"period_{i}")
        terms.append(
            f"CAST(round(events * event_weight * pow(2.0, {exponent})) AS HUGEINT) AS term_{i}"
        )
        term_args.extend(args)
        numbers, factors = _period_factors(half_life, first_day, end)
        names = [f"mass_{i}_{j}" for j in range(len(numbers))]
        masses.extend(
            f"sum(CASE WHEN period_{i} = ? THEN term_{i} END) AS {name}" for name in names
        )
        mass_args.extend(numbers)
        weights.append(f"({_weight_sql(names)})::DOUBLE AS weight_{i}")
        weight_args.extend(factors)
    rows, rows_args = _weighted_rows_sql(params, start, end)
    sql = f"""
        SELECT user_id, page_id, {", ".join(weights)}, n_events, converted
        FROM (SELECT user_id, page_id, {", ".join(masses)},
                     sum(events)::BIGINT AS n_events,
                     bool_or(list_contains(?::VARCHAR[], event_type)) AS converted
              FROM (SELECT *, {", ".join(terms)}
                    FROM (SELECT *, {", ".join(periods)} FROM ({rows})))
              GROUP BY user_id, page_id)
    """
    conversions = [list(params.conversion_events)]
    return sql, [*weight_args, *mass_args, *conversions, *term_args, *period_args, *rows_args]


def first_day(con: duckdb.DuckDBPyConnection) -> date | None:
    """The first day in ``user_page_daily`` (None when it is empty)."""
    return con.execute(f"SELECT min(day) FROM {INTERACTIONS_TABLE}").fetchone()[0]


def load_interactions(
    con: duckdb.DuckDBPyConnection,
    start: datetime | None,
    end: datetime,
    params: RecommenderParams,
) -> pl.DataFrame:
    """One row per (user, page) with events on the days in [start, end): decayed weight,
    event count, conversion flag.

    ``start=None`` reads every day before ``end``. ``weight`` = sum over ``user_page_daily``
    rows of events x event-type weight x 0.5^(age_days / half_life) (x 1 when
    ``half_life_days`` is None), age_days being the whole days from the row's day to ``end``,
    summed exactly (see ``FIXED_POINT_BITS``). Both bounds must be midnights.
    """
    end_day = midnight(end, "end").date()
    start_day = midnight(start, "start").date() if start is not None else None
    earliest = start_day or first_day(con) or end_day
    sums = period_sums_sql(params, start_day, end_day)
    return con.execute(*combine_periods_sql(sums, params, earliest, end_day)).pl()


def engaged_pages(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pl.DataFrame:
    """Distinct (user_id, page_id) with any event on the days in [start, end) (the evaluation's
    test set); both bounds midnights."""
    return con.execute(
        f"SELECT DISTINCT user_id, page_id FROM {INTERACTIONS_TABLE} "
        "WHERE day >= ? AND day < ? AND user_id IS NOT NULL AND page_id IS NOT NULL",
        [midnight(start, "start").date(), midnight(end, "end").date()],
    ).pl()


def load_segments(con: duckdb.DuckDBPyConnection) -> tuple[pl.DataFrame | None, str]:
    """user_segments(user_id, segment_id, segment_name) if the table exists, else (None, why)."""
    columns = {
        row[0]
        for row in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = 'user_segments'"
        ).fetchall()
    }
    if not columns:
        return None, "user_segments does not exist yet: segment popularity falls back to global"
    if not {"user_id", "segment_id"} <= columns:
        return None, "user_segments lacks user_id/segment_id: segment popularity = global"
    name_column = "segment_name" if "segment_name" in columns else "segment_id"
    frame = con.execute(
        f"SELECT user_id, CAST(segment_id AS VARCHAR) AS segment_id, "
        f"CAST({name_column} AS VARCHAR) AS segment_name FROM main.user_segments"
    ).pl()
    if frame.is_empty():
        return None, "user_segments is empty: segment popularity falls back to global"
    return frame, f"segments from user_segments ({frame['segment_id'].n_unique()} segments)"


@dataclass(frozen=True)
class Interactions:
    """Training history as sparse (users, pages) matrices; columns follow the catalogue."""

    user_ids: np.ndarray  # row labels
    strength: sp.csr_matrix  # (users, pages) log1p(decayed weight) or binary, float32
    converted: sp.csr_matrix  # (users, pages) 1 where the user converted
    engaged: sp.csr_matrix  # (users, pages) 1 where the user has any weighted event, however old
    n_rows: int  # (user, page) pairs behind the matrix

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def hidden(self, exclude: str) -> sp.csr_matrix:
        """(users, pages) nonzero where the exclusion policy hides the page from the user:
        every page engaged with ("engaged"), or only the converted ones ("converted")."""
        return self.converted if exclude == "converted" else self.engaged

    def user_rows(self) -> pl.DataFrame:
        """user_id, train_index: each training user's row in the matrices."""
        return row_index(self.user_ids, "user_id", "train_index")


def row_index(labels: np.ndarray, label: str, index: str) -> pl.DataFrame:
    """``label``, ``index``: each label with its row (or column) number in a matrix."""
    return pl.DataFrame({label: labels, index: np.arange(len(labels), dtype=np.int64)})


def build_interactions(
    frame: pl.DataFrame, catalogue: Catalogue, strength: str = "log1p"
) -> Interactions:
    """Sparse matrices from ``load_interactions`` rows; pages outside the catalogue are dropped.

    ``strength``: "log1p" of the decayed weight, or "binary" (1 for every pair with weight > 0).
    """
    rows = frame.join(
        row_index(catalogue.page_ids, "page_id", "page_index"), on="page_id", how="inner"
    )
    users = rows["user_id"].unique().sort()
    rows = rows.join(row_index(users, "user_id", "user_index"), on="user_id", how="inner")
    user_ids = users.to_numpy().astype(str)
    coordinates = (rows["user_index"].to_numpy(), rows["page_index"].to_numpy())
    converted = rows["converted"].fill_null(False).to_numpy()
    shared = _shared_matrices(coordinates, converted, user_ids, catalogue.size)
    weight = rows["weight"].fill_null(0.0).fill_nan(0.0).to_numpy()
    return _matrices(user_ids, coordinates, weight, shared, strength)


def load_training(
    con: duckdb.DuckDBPyConnection,
    start: datetime | None,
    end: datetime,
    params: RecommenderParams,
    catalogue: Catalogue,
) -> Interactions:
    """``build_interactions(load_interactions(con, start, end, params), catalogue, ...)``,
    the same matrices, with users and pages numbered in SQL: only int32 codes, the weight and
    the conversion flag reach Python (and one label per user), never a text id per pair."""
    return load_training_by_half_life(con, start, end, params, catalogue)[params.half_life_days]


def load_training_by_half_life(
    con: duckdb.DuckDBPyConnection,
    start: datetime | None,
    end: datetime,
    params: RecommenderParams,
    catalogue: Catalogue,
    half_lives: Sequence[float | None] | None = None,
) -> dict[float | None, Interactions]:
    """``load_training`` under each of ``half_lives`` (default: the params' own), the other
    knobs from ``params``, in one read of the daily table: half-life -> the same matrices as
    its own ``load_training``. The users and the pairs do not depend on the decay, so the
    conversion and engagement matrices are shared."""
    half_lives = list(dict.fromkeys(half_lives or [params.half_life_days]))
    end_day = midnight(end, "end").date()
    start_day = midnight(start, "start").date() if start is not None else None
    earliest = start_day or first_day(con) or end_day
    if len(half_lives) == 1:
        decayed = replace(params, half_life_days=half_lives[0])
        sums = period_sums_sql(decayed, start_day, end_day)
        read = combine_periods_sql(sums, decayed, earliest, end_day)
        columns = ["weight"]
    else:
        read = half_lives_sql(params, half_lives, start_day, end_day, earliest)
        columns = [f"weight_{i}" for i in range(len(half_lives))]
    sets = _coded(con, read, catalogue, params.strength, columns)
    return dict(zip(half_lives, sets, strict=True))


def coded_interactions(
    con: duckdb.DuckDBPyConnection,
    combined: tuple[str, list[object]],
    catalogue: Catalogue,
    strength: str,
) -> Interactions:
    """The matrices of ``combined`` (SQL and arguments of ``combine_periods_sql``'s rows),
    users numbered in name order and pages in catalogue order by the engine."""
    return _coded(con, combined, catalogue, strength, ["weight"])[0]


def _coded(
    con: duckdb.DuckDBPyConnection,
    read: tuple[str, list[object]],
    catalogue: Catalogue,
    strength: str,
    weights: Sequence[str],
) -> list[Interactions]:
    """``coded_interactions`` for each weight column of ``read``, sharing everything else."""
    pages = pl.DataFrame(
        {
            "page_id": catalogue.page_ids.tolist(),
            "page_index": np.arange(catalogue.size, dtype=np.int32),
        },
        schema={"page_id": pl.String, "page_index": pl.Int32},
    )
    con.register("ubap_catalogue_pages", pages)
    try:
        coded = con.execute(
            f"""
            SELECT (dense_rank() OVER (ORDER BY user_id) - 1)::INTEGER AS user_index,
                   page_index, {", ".join(f"coalesce({w}, 0.0) AS {w}" for w in weights)},
                   coalesce(converted, false) AS converted,
                   CASE WHEN row_number() OVER (PARTITION BY user_id ORDER BY page_index) = 1
                        THEN user_id END AS user_label
            FROM ({read[0]}) JOIN ubap_catalogue_pages USING (page_id)
            ORDER BY user_index, page_index
            """,
            read[1],
        ).pl()
    finally:
        con.unregister("ubap_catalogue_pages")
    labels = coded["user_label"].drop_nulls().to_numpy().astype(str)
    coordinates = (coded["user_index"].to_numpy(), coded["page_index"].to_numpy())
    shared = _shared_matrices(coordinates, coded["converted"].to_numpy(), labels, catalogue.size)
    return [
        _matrices(labels, coordinates, coded[w].fill_nan(0.0).to_numpy(), shared, strength)
        for w in weights
    ]


def _shared_matrices(
    coordinates: tuple[np.ndarray, np.ndarray],
    converted: np.ndarray,
    user_ids: np.ndarray,
    n_pages: int,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The conversion and engagement (users, pages) matrices, one entry per pair."""
    shape = (len(user_ids), n_pages)
    conversions = sp.csr_matrix(
        (converted.astype(np.float32), coordinates), shape=shape, dtype=np.float32
    )
    conversions.eliminate_zeros()
    engaged = sp.csr_matrix(
        (np.ones(len(converted), dtype=np.float32), coordinates), shape=shape, dtype=np.float32
    )
    return conversions, engaged


def _matrices(
    user_ids: np.ndarray,
    coordinates: tuple[np.ndarray, np.ndarray],
    weight: np.ndarray,
    shared: tuple[sp.csr_matrix, sp.csr_matrix],
    strength: str,
) -> Interactions:
    """Interactions from one weight per (user, page) pair (at ``coordinates``) and the pairs'
    conversion and engagement matrices (``_shared_matrices``)."""
    conversions, engaged = shared
    weight = np.clip(weight, 0.0, None)
    values = (weight > 0).astype(np.float32) if strength == "binary" else np.log1p(weight)
    matrix = sp.csr_matrix(
        (values.astype(np.float32), coordinates), shape=engaged.shape, dtype=np.float32
    )
    return Interactions(user_ids, matrix, conversions, engaged, len(weight))
