"""Admin insights: each finding's suggested action is written from its own numbers."""

from datetime import date

import polars as pl
import pytest

from tests.conftest import world_db
from ubap_assets.core import insights, recommend
from ubap_assets.lib.embedder import HashingEmbedder


@pytest.fixture(scope="module")
def findings(tiny_world) -> pl.DataFrame:
    """Every kind of finding on the tiny synthetic site (low thresholds so each kind shows)."""
    con = world_db(tiny_world)
    texts = recommend.page_texts(tiny_world.pages)
    embeddings = recommend.embeddings_frame(
        texts, HashingEmbedder().embed(texts["text"].to_list()), "hash"
    )
    similar = recommend.similar_pages(embeddings, tiny_world.pages)
    shown = pl.DataFrame({"page_id": tiny_world.pages["page_id"].head(20)})
    return insights.build_insights(
        con,
        tiny_world.pages,
        embeddings,
        similar,
        shown,
        800,
        {"product"},
        recommend.data_end(con),
        insights.InsightParams(funnel_min_sessions=40, rate_ratio=1.1, island_similarity=0.5),
    )


def test_every_kind_is_found(findings):
    assert set(findings["kind"]) >= {
        "high_exit_page",
        "high_bounce_page",
        "funnel_dropoff",
        "never_recommended",
        "content_island",
    }, findings["kind"].value_counts()


def test_findings_with_different_numbers_never_share_advice(findings):
    numbers = ["kind", "subject", "value", "baseline", "volume"]
    by_advice = findings.group_by("suggested_action").agg(pl.struct(numbers).alias("findings"))
    shared = by_advice.filter(pl.col("findings").list.len() > 1)
    assert shared.is_empty(), shared.to_dicts()[:3]
    assert findings["suggested_action"].n_unique() == findings.height


def test_advice_quotes_the_findings_own_figures(findings):
    for row in findings.iter_rows(named=True):
        action = row["suggested_action"]
        if row["kind"] in ("high_exit_page", "high_bounce_page"):
            assert f"{row['value']:.0%}" in action and f"{row['baseline']:.0%}" in action, action
            assert row["subject_title"] in action
        elif row["kind"] == "funnel_dropoff":
            assert f"{row['value']:.0%}" in action and f"{row['volume']:,}" in action, action
        elif row["kind"] == "never_recommended":
            assert row["subject_title"] in action and "800" in action, action
        else:
            assert row["subject_title"] in action, action


def test_page_advice_follows_the_page_type_and_the_gain():
    product = insights._page_action(
        "high_exit_page", "Quiet 700", "product", 0.40, 0.20, 500, insights.InsightParams()
    )
    blog = insights._page_action(
        "high_exit_page", "Buying guide", "blog", 0.40, 0.20, 500, insights.InsightParams()
    )
    assert "about 100 more sessions" in product and "add-to-cart" in product
    assert "products the article talks about" in blog


def test_a_drop_on_the_latest_day_asks_for_an_alert_an_older_one_does_not():
    today, earlier = date(2026, 2, 14), date(2026, 2, 1)
    step = "checkout_start -> purchase"
    latest = insights._day_action(step, today, 0.1, 0.8, 50, today)
    older = insights._day_action(step, earlier, 0.1, 0.8, 50, today)
    assert "on-call" in latest and "on-call" not in older
    assert "about 35 of 50 sessions" in latest and "payment form" in latest
