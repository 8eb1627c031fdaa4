"""The shared definitions: KPIs recomputed from sums, periods of equal length, metric labels."""

from datetime import date, timedelta

import polars as pl
import pytest

from ubap_assets.core import metrics


def days_frame(n: int, first: date = date(2026, 1, 1)) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "day": [first + timedelta(days=i) for i in range(n)],
            "active_users": [10 + i for i in range(n)],
            "sessions": [20 + 2 * i for i in range(n)],
            "converted_sessions": [i % 3 for i in range(n)],
            "bounced_sessions": [5] * n,
            "events": [100] * n,
            "page_views": [50] * n,
            "purchases": [i % 3 for i in range(n)],
            "revenue": [12.5 * (i % 3) for i in range(n)],
            "new_users": [2] * n,
            "mean_session_duration_s": [60.0 + i for i in range(n)],
        }
    )


def test_rates_come_from_summed_counts_not_averaged_rates():
    frame = days_frame(7)
    kpis = metrics.period_kpis(frame)
    assert kpis["days"] == 7
    assert kpis["sessions"] == frame["sessions"].sum()
    assert kpis["conversion_rate"] == pytest.approx(
        frame["converted_sessions"].sum() / frame["sessions"].sum()
    )
    assert kpis["bounce_rate"] == pytest.approx(5 * 7 / frame["sessions"].sum())
    weighted = (frame["mean_session_duration_s"] * frame["sessions"]).sum()
    assert kpis["mean_session_duration_s"] == pytest.approx(weighted / frame["sessions"].sum())
    assert kpis["active_users"] == pytest.approx(frame["active_users"].mean())
    assert metrics.period_kpis(frame.head(0)) == {}


def test_zero_sessions_give_zero_rates():
    frame = days_frame(2).with_columns(pl.lit(0).alias("sessions"))
    kpis = metrics.period_kpis(frame)
    assert kpis["conversion_rate"] == kpis["bounce_rate"] == 0.0


def test_headline_compares_equal_periods_only():
    full = metrics.headline_kpis(days_frame(14), days=7)
    assert full.start == date(2026, 1, 8) and full.end == date(2026, 1, 14)
    assert full.previous_start == date(2026, 1, 1)
    assert [k.metric for k in full.kpis] == list(metrics.HEADLINE_KPIS)
    sessions = {k.metric: k for k in full.kpis}["sessions"]
    assert sessions.value == sum(20 + 2 * i for i in range(7, 14))
    assert sessions.previous == sum(20 + 2 * i for i in range(7))
    short = metrics.headline_kpis(days_frame(10), days=7)
    assert short.previous_start is None
    assert all(k.previous is None and k.delta is None for k in short.kpis)
    assert metrics.headline_kpis(days_frame(0)) is None


def test_every_pickable_metric_is_a_trend_column():
    assert set(metrics.TREND_METRICS) <= set(metrics.TREND_COLUMNS)
    assert set(metrics.HEADLINE_KPIS) <= set(metrics.TREND_COLUMNS)
