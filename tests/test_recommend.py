"""Recommendations: interactions, similar pages, the hybrid, bad input, the assets in Dagster."""

from datetime import datetime, timedelta

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from dagster_duckdb import DuckDBResource

from tests.conftest import world_db
from ubap_assets.core import recommend
from ubap_assets.core.catalogue import page_catalogue
from ubap_assets.core.daily import build_all_daily
from ubap_assets.core.recommend import scorers
from ubap_assets.core.recommend.scorers import ease_weights
from ubap_assets.core.schema import EVENTS_SCHEMA
from ubap_assets.lib.embedder import HashingEmbedder
from ubap_assets.lib.warehouse_io import DuckDBWarehouseIOManager

T0 = datetime(2026, 3, 1)


def _pages(n: int = 6) -> pl.DataFrame:
    rows = [
        ("h", "/", "Home", "The shop", "Site", "home"),
        ("a", "/a", "Quiet ANC headphones", "Over-ear noise cancelling", "Audio", "product"),
        ("b", "/b", "Sport earbuds", "Wireless noise cancelling earbuds", "Audio", "product"),
        ("c", "/c", "Coffee grinder", "Burr grinder for espresso", "Kitchen", "product"),
        ("d", "/d", "Espresso machine", "Pump espresso machine", "Kitchen", "product"),
        ("e", "/e", "", None, None, "blog"),  # a page with no text at all
    ][:n]
    return pl.DataFrame(
        rows,
        schema=["page_id", "url", "title", "description", "category", "page_type"],
        orient="row",
    ).with_columns(price=pl.lit(1.0))


def _events(rows: list[tuple[str, str, str, int]]) -> pl.DataFrame:
    """(user, page, event_type, days before T0 + 10d)."""
    return pl.DataFrame(
        [
            {
                "event_id": f"e{i}",
                "user_id": u,
                "session_id": f"s{u}{d}",
                "event_ts": T0 + timedelta(days=10 - d, hours=i % 5),
                "event_type": t,
                "page_id": p,
                "device": "mobile",
                "traffic_source": "organic",
                "revenue": None,
            }
            for i, (u, p, t, d) in enumerate(rows)
        ],
        schema=EVENTS_SCHEMA,
    )


def _con(events: pl.DataFrame) -> duckdb.DuckDBPyConnection:
    """A warehouse with ``events`` and the daily aggregates the recommender reads."""
    con = duckdb.connect()
    con.register("_ev", events)
    con.execute("CREATE TABLE events AS SELECT * FROM _ev")
    con.unregister("_ev")
    build_all_daily(con)
    return con


def _embeddings(pages: pl.DataFrame, model: str = "h") -> pl.DataFrame:
    texts = recommend.page_texts(pages)
    return recommend.embeddings_frame(
        texts, HashingEmbedder().embed(texts["text"].to_list()), model
    )


def _model(pages, events, params=None, segments=None):
    params = params or recommend.RecommenderParams(k=3)
    embeddings = _embeddings(pages, "hash")
    con = _con(events)
    end = recommend.data_end(con)
    frame = recommend.load_interactions(con, None, end, params)  # the whole history
    catalogue = recommend.build_catalogue(pages, embeddings, params)
    train = recommend.build_interactions(frame, catalogue, params.strength)
    return (
        recommend.fit(catalogue, train, params, segments),
        end,
        embeddings,
    )


SMALL = [
    ("u1", "a", "page_view", 1),
    ("u1", "a", "purchase", 1),
    ("u1", "b", "page_view", 2),
    ("u2", "a", "page_view", 3),
    ("u2", "b", "add_to_cart", 3),
    ("u2", "c", "page_view", 20),
    ("u3", "c", "page_view", 1),
    ("u3", "d", "page_view", 1),
    ("u3", "d", "purchase", 1),
    ("u4", "h", "page_view", 1),
]


def test_interactions_weight_event_types_and_decay():
    con = _con(
        _events(
            [
                ("u", "a", "page_view", 0),
                ("u", "b", "purchase", 0),
                ("v", "a", "page_view", 0),
                ("v", "b", "page_view", 28),
            ]
        )
    )
    end = recommend.data_end(con)
    frame = recommend.load_interactions(
        con, end - timedelta(days=90), end, recommend.RecommenderParams(half_life_days=14)
    )
    by_pair = {(r["user_id"], r["page_id"]): r for r in frame.iter_rows(named=True)}
    assert by_pair[("u", "b")]["weight"] > by_pair[("u", "a")]["weight"]  # purchase > view
    assert by_pair[("u", "b")]["converted"] and not by_pair[("u", "a")]["converted"]
    # 28 days old with a 14-day half-life: a quarter of a fresh view (same time of day)
    ratio = by_pair[("v", "b")]["weight"] / by_pair[("v", "a")]["weight"]
    # ages are whole days (user_page_daily), so exactly two half-lives
    assert ratio == pytest.approx(0.25, rel=1e-9)
    assert by_pair[("u", "a")]["n_events"] == 1
    # the last day before the end is one day old: weight 0.5^(1/14) for a view of weight 1
    view_weight = recommend.RecommenderParams().event_weights["page_view"]
    assert by_pair[("v", "a")]["weight"] == pytest.approx(view_weight * 0.5 ** (1 / 14))
    with pytest.raises(recommend.RecommendationError, match="not a midnight"):
        recommend.load_interactions(
            con, None, end - timedelta(hours=6), recommend.RecommenderParams()
        )


def test_page_texts_and_empty_page():
    texts = recommend.page_texts(_pages())
    row = texts.filter(pl.col("page_id") == "e").row(0, named=True)
    assert row["text"] == "" and not row["has_text"]
    assert texts.filter(pl.col("page_id") == "a")["text"][0] == (
        "Quiet ANC headphones. Over-ear noise cancelling. Audio"
    )


def test_similar_pages_skips_self_and_textless_pages():
    model, _, embeddings = _model(_pages(), _events(SMALL))
    sim = recommend.similar_pages(embeddings, _pages(), k=2)
    assert sim.filter(pl.col("page_id") == pl.col("similar_page_id")).is_empty()
    assert "e" not in sim["page_id"].to_list() and "e" not in sim["similar_page_id"].to_list()
    assert sim.group_by("page_id").len()["len"].max() == 2
    assert sim.filter(pl.col("page_id") == "a")["similar_page_id"][0] == "b"
    assert sim["similarity"].is_nan().sum() == 0


def test_recommend_every_user_gets_k_explained_rows():
    params = recommend.RecommenderParams(k=3, exclude="converted")
    model, end, _ = _model(_pages(), _events(SMALL), params)
    lists = recommend.recommendation_lists(model, ["u1", "u2", "u3", "u4", "ghost"], end)
    counts = lists.group_by("user_id").agg(pl.len(), pl.col("page_id").n_unique().alias("d"))
    assert counts.height == 5 and set(counts["len"]) == {3} and set(counts["d"]) == {3}
    assert "h" not in lists["page_id"].to_list()  # navigation pages are never candidates
    # converted pages are excluded: u1 bought a, u3 bought d
    assert lists.filter((pl.col("user_id") == "u1") & (pl.col("page_id") == "a")).is_empty()
    assert lists.filter((pl.col("user_id") == "u3") & (pl.col("page_id") == "d")).is_empty()
    ghost = lists.filter(pl.col("user_id") == "ghost")
    assert set(ghost["source"]) == {"global_popularity"}
    assert ghost["reason"][0].startswith("no history yet")
    assert set(lists.filter(pl.col("user_id") == "u2")["source"]) == {"hybrid"}
    assert lists["reason"].str.len_chars().min() > 0
    assert lists["score"].is_nan().sum() == 0 and lists["score"].null_count() == 0
    assert lists["generated_at"][0] == end


def test_hybrid_prefers_pages_like_the_users_history():
    params = recommend.RecommenderParams(k=3, exclude="converted")
    model, end, _ = _model(_pages(), _events(SMALL), params)
    top = recommend.recommendation_lists(model, ["u3"], end).filter(pl.col("rank") == 1)
    assert top["page_id"][0] in {"c"}  # the other kitchen page, not headphones
    reason = recommend.recommendation_lists(model, ["u1"], end).filter(pl.col("page_id") == "b")
    assert reason.height == 1


def test_engaged_policy_never_repeats_a_page_even_when_the_catalogue_runs_out():
    params = recommend.RecommenderParams(k=4)  # exclude="engaged" is the default
    model, end, _ = _model(_pages(), _events(SMALL), params)
    lists = recommend.recommendation_lists(model, ["u2"], end)
    # 5 candidates, u2 engaged with a, b, c: the list is shorter than k, never repeated
    assert set(lists["page_id"]) == {"d", "e"} and lists["rank"].to_list() == [1, 2]
    assert set(lists["source"]) == {"hybrid"}


@pytest.mark.parametrize("policy", ["engaged", "converted"])
@pytest.mark.parametrize("served", ["hybrid", "ease", "segment_popularity", "global_popularity"])
def test_served_lists_drop_what_the_policy_hides_on_every_path(policy, served):
    from ubap_assets.core.recommend import tuning

    params = tuning.serving_params(served, recommend.RecommenderParams(k=4, exclude=policy))
    model, end, _ = _model(_pages(), _events(SMALL), params)
    lists = recommend.recommendation_lists(model, ["u1", "u2", "u3", "u4"], end)
    rows = model.train.user_rows()
    hidden = model.exclusion_matrix()
    served_pairs = lists.join(rows, on="user_id").with_columns(
        page_index=pl.col("page_id").replace_strict(
            {p: i for i, p in enumerate(model.catalogue.page_ids)}, return_dtype=pl.Int64
        )
    )
    assert served_pairs.height == lists.height > 0
    flags = hidden[served_pairs["train_index"].to_numpy(), served_pairs["page_index"].to_numpy()]
    assert np.asarray(flags).sum() == 0, "a hidden page was served"
    u1 = set(lists.filter(pl.col("user_id") == "u1")["page_id"])
    # u1 viewed b without buying it: hidden when engaged counts, shown when only conversions do
    assert ("b" in u1) == (policy == "converted") and "a" not in u1


def test_whole_history_counts_an_old_interaction():
    rows = [("old", "c", "page_view", 400), ("new", "a", "page_view", 1)]
    params = recommend.RecommenderParams(k=2, half_life_days=14)
    model, end, _ = _model(_pages(), _events(rows), params)
    assert set(model.train.user_ids) == {"old", "new"}
    lists = recommend.recommendation_lists(model, ["old", "new", "never"], end)
    old = lists.filter(pl.col("user_id") == "old")
    assert set(old["source"]) == {"hybrid"} and "c" not in old["page_id"].to_list()
    assert not old["reason"].str.starts_with("no history").any()
    never = lists.filter(pl.col("user_id") == "never")
    assert never["reason"].str.starts_with("no history").all()
    # a 400-day-old view decays to ~2e-9 of a fresh one, yet still marks the page as engaged
    assert model.train.engaged.sum() == 2


def test_ease_on_unit_weights_is_textbook_ease():
    rng = np.random.default_rng(7)
    binary = (rng.random((40, 12)) < 0.3).astype(np.float64)
    binary[np.arange(40), np.arange(40) % 12] = 1.0  # every user has an interaction
    lam = 3.0
    p = np.linalg.inv(binary.T @ binary + lam * np.eye(12))
    textbook = np.eye(12) - p / np.diag(p)  # B = I - P / diag(P), so diag(B) = 0
    # the same matrix as events: one page_view per (user, page); binary strength, no decay
    pages = pl.DataFrame(
        {
            "page_id": [f"p{j:02d}" for j in range(12)],
            "url": "/",
            "title": [f"page {j}" for j in range(12)],
            "description": "d",
            "category": "c",
            "page_type": "product",
            "price": 1.0,
        }
    )
    users, items = np.nonzero(binary)
    events = _events(
        [(f"u{u:02d}", f"p{j:02d}", "page_view", 1) for u, j in zip(users, items, strict=True)]
    )
    params = recommend.RecommenderParams(strength="binary", half_life_days=None, ease_lambda=lam)
    model, _, _ = _model(pages, events, params)
    assert np.array_equal(model.train.strength.toarray(), binary)
    ours = ease_weights(model.train.strength, lam, dtype=np.float64)
    assert np.abs(ours - textbook).max() < 1e-9 and np.abs(np.diag(ours)).max() == 0.0
    # the fitted model stores the same weights in float32 and scores X @ B
    np.testing.assert_allclose(model.ease_weights, textbook, atol=1e-6)
    np.testing.assert_allclose(model.ease(model.train.strength), binary @ textbook, atol=1e-5)


def test_segment_popularity_for_cold_users_and_fallback():
    segments_frame = pl.DataFrame(
        {
            "user_id": ["u3", "newbie"],
            "segment_id": [1, 1],
            "segment_name": ["kitchen fans", "kitchen fans"],
        }
    )
    model, end, _ = _model(
        _pages(), _events(SMALL), recommend.RecommenderParams(k=2), segments_frame
    )
    lists = recommend.recommendation_lists(model, ["newbie", "stranger"], end)
    newbie = lists.filter(pl.col("user_id") == "newbie")
    assert set(newbie["source"]) == {"segment_popularity"}
    assert "kitchen fans" in newbie["reason"][0]
    assert newbie["page_id"][0] == "d"  # what u3's segment engaged with most
    stranger = lists.filter(pl.col("user_id") == "stranger")
    assert set(stranger["source"]) == {"global_popularity"}
    assert stranger["page_id"][0] == "a"  # the site's most popular page


def test_catalogue_of_one_page():
    pages = _pages(2)  # home + one product
    model, end, embeddings = _model(pages, _events([("u1", "a", "page_view", 1)]))
    assert recommend.similar_pages(embeddings.filter(pl.col("page_id") == "a"), pages).is_empty()
    lists = recommend.recommendation_lists(model, ["u1", "u2"], end)
    # u1 engaged with the only candidate: nothing left to show; u2 (no history) gets it
    assert lists.height == 1 and lists.row(0)[:3] == ("u2", 1, "a")


def test_bad_input_messages():
    with pytest.raises(recommend.RecommendationError, match="weights"):
        recommend.RecommenderParams(w_content=-1).validate()
    with pytest.raises(recommend.RecommendationError, match="exclude"):
        recommend.RecommenderParams(exclude="seen").validate()
    with pytest.raises(recommend.RecommendationError, match="strength"):
        recommend.RecommenderParams(strength="raw").validate()
    with pytest.raises(recommend.RecommendationError, match="half_life_days"):
        recommend.RecommenderParams(half_life_days=0).validate()
    with pytest.raises(recommend.RecommendationError, match="pages table is empty"):
        recommend.page_texts(_pages().clear())
    con = _con(_events(SMALL).clear())
    with pytest.raises(recommend.RecommendationError, match="events table is empty"):
        recommend.data_end(con)


def test_no_history_at_all_still_gives_everyone_k():
    pages = _pages()
    # the only event is on a page that is not in the catalogue: no usable history at all
    model, _, _ = _model(pages, _events([("u9", "zz", "page_view", 1)]))
    assert model.train.n_users == 0
    lists = recommend.recommendation_lists(model, ["a", "b"], T0)
    assert lists.height == 6 and set(lists["source"]) == {"global_popularity"}


def test_recommendations_on_synthetic_world(tiny_world):
    con = world_db(tiny_world)
    params = recommend.RecommenderParams()
    embeddings = _embeddings(tiny_world.pages)
    end = recommend.data_end(con)
    catalogue = recommend.build_catalogue(tiny_world.pages, embeddings, params)
    model = recommend.fit(
        catalogue,
        recommend.build_interactions(
            recommend.load_interactions(con, None, end, params), catalogue
        ),
        params,
    )
    users = tiny_world.users["user_id"].to_numpy()
    lists = recommend.recommendation_lists(model, users, end)
    assert lists.height == len(users) * params.k
    # a user's favourite category dominates their hybrid list
    fav = tiny_world.personas.select("user_id", "favourite_category")
    cats = (
        lists.filter(pl.col("source") == "hybrid")
        .join(tiny_world.pages.select("page_id", "category"), on="page_id")
        .join(fav, on="user_id")
    )
    share = (cats["category"] == cats["favourite_category"]).mean()
    assert share > 0.3, f"only {share:.0%} of hybrid picks are in the favourite category"
    assert np.isfinite(lists["score"].to_numpy()).all()


@pytest.fixture
def warehouse_file(tmp_path, tiny_world):
    path = str(tmp_path / "w.duckdb")
    con = duckdb.connect(path)
    world = tiny_world
    for name, frame in (("events", world.events), ("pages", world.pages), ("users", world.users)):
        con.register("_f", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM _f")
        con.unregister("_f")
    segments_frame = world.personas.select(
        "user_id",
        segment_id=pl.col("persona").rank("dense").cast(pl.Int64),
        segment_name=pl.col("persona"),
    )
    con.register("_f", segments_frame)
    con.execute("CREATE TABLE user_segments AS SELECT * FROM _f")
    con.unregister("_f")
    build_all_daily(con)
    con.close()
    return path


@pytest.mark.slow
def test_assets_materialize_with_checks(warehouse_file):
    from ubap_assets.defs.recommendations import assets, checks

    # pages, users, events, the daily aggregates and user_segments already sit in the
    # warehouse file (fixture)
    upstream = [
        dg.AssetSpec(name)
        for name in (
            "pages",
            "users",
            "events",
            "sessions",
            "page_daily",
            "user_page_daily",
            "user_segments",
        )
    ]

    mine = [
        assets.page_embeddings,
        assets.similar_pages,
        assets.user_recommendations,
        assets.rec_evaluation,
        assets.admin_insights,
    ]
    result = dg.materialize(
        [
            *mine,
            *upstream,
            checks.hybrid_beats_popularity,
            checks.every_user_gets_k,
            checks.served_lists_respect_history,
            checks.no_self_neighbours,
            checks.embeddings_unit_length,
        ],
        resources={
            "io_manager": DuckDBWarehouseIOManager(database=warehouse_file),
            "warehouse": DuckDBResource(database=warehouse_file),
            "embedder": HashingEmbedder(),
        },
    )
    assert result.success
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations["every_user_gets_k"] and evaluations["embeddings_unit_length"]
    assert evaluations["no_self_neighbours"] and evaluations["served_lists_respect_history"]
    served_check = next(
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "served_lists_respect_history"
    )
    figures = {key: value.value for key, value in served_check.metadata.items()}
    assert figures["rows_the_policy_should_hide"] == 0 and figures["users_with_events"] > 600
    assert figures["users_with_events_told_no_history"] == 0
    with duckdb.connect(warehouse_file, read_only=True) as con:
        ev = con.execute(
            "SELECT method, status, ndcg_at_k, users_evaluated, is_served, note FROM rec_evaluation"
        ).pl()
        kinds = con.execute("SELECT DISTINCT kind FROM admin_insights").pl()["kind"].to_list()
        emb_type = con.execute(
            "SELECT data_type FROM information_schema.columns WHERE "
            "table_name='page_embeddings' AND column_name='embedding'"
        ).fetchone()[0]
        n_users = con.execute(
            "SELECT count(DISTINCT user_id) FROM user_recommendations"
        ).fetchone()[0]
    assert emb_type == "FLOAT[]"
    assert n_users == 800
    assert set(ev["method"]) >= {"random", "global_popularity", "hybrid", "user_knn"}
    assert ev["users_evaluated"].min() >= 100 and set(ev["status"]) == {"ok"}
    assert ev["is_served"].sum() == 1
    assert "segments from user_segments" in ev["note"][0]
    assert kinds, "admin_insights should find something on the synthetic site"


def test_catalogue_constant_is_recommendable():
    params = recommend.RecommenderParams()
    catalogue = recommend.build_catalogue(page_catalogue(), None, params)
    assert 100 < catalogue.recommendable.sum() < catalogue.size


# ------------------------------------------------------------------------------ admin insights


def test_insights_find_a_checkout_outage(tiny_world):
    from ubap_assets.core import insights

    # a checkout outage planted here: no purchase completes on one day inside the window
    last_day = tiny_world.events["event_ts"].max().date()
    outage = last_day - timedelta(days=9)
    events = tiny_world.events.filter(
        ~((pl.col("event_type") == "purchase") & (pl.col("event_ts").dt.date() == outage))
    )
    con = _con(events)
    end = recommend.data_end(con)
    embeddings = _embeddings(tiny_world.pages)
    sim = recommend.similar_pages(embeddings, tiny_world.pages)
    shown = pl.DataFrame({"page_id": ["p010", "p011"]})
    out = insights.build_insights(
        con,
        tiny_world.pages,
        embeddings,
        sim,
        shown,
        800,
        {"product"},
        end,
        insights.InsightParams(funnel_min_sessions=40),
    )
    assert out.schema == insights.SCHEMA
    assert out["insight_id"].is_unique().all()
    assert out["details"].str.len_chars().min() > 0
    assert out["suggested_action"].str.len_chars().min() > 0
    assert out["value"].is_nan().sum() == 0
    flagged = out.filter(pl.col("kind") == "funnel_dropoff")["subject"].to_list()
    assert f"checkout_start -> purchase [day={outage}]" in flagged, flagged
    days = [s for s in flagged if "[day=" in s]
    assert len(days) == 1, f"false daily alarms: {days}"
    never = out.filter(pl.col("kind") == "never_recommended")
    assert never.height > 0 and "p010" not in never["subject"].to_list()
    assert set(out["kind"]) >= {"high_exit_page", "funnel_dropoff", "never_recommended"}


def test_content_island_for_a_page_without_text():
    from ubap_assets.core import insights

    pages = _pages()
    embeddings = _embeddings(pages)
    rows = insights.content_islands(
        embeddings, recommend.similar_pages(embeddings, pages), pages, insights.InsightParams()
    )
    empty = [r for r in rows if r["subject"] == "e"]
    assert empty and empty[0]["severity"] == "high"
    assert "no title" in empty[0]["details"]


def test_high_exit_page_is_flagged():
    from ubap_assets.core import insights

    # 8 pages with equal traffic; sessions on page 'p7' always end there
    rows = []
    for s in range(400):
        first, second = f"p{s % 7}", f"p{(s + 1) % 7}"
        last = "p7" if s % 2 else f"p{(s + 2) % 7}"
        for i, page in enumerate((first, second, last)):
            rows.append((f"s{s}", page, T0 + timedelta(minutes=s * 10 + i)))
    events = pl.DataFrame(rows, schema=["session_id", "page_id", "event_ts"], orient="row")
    events = events.with_columns(
        event_id=pl.int_range(pl.len()).cast(pl.String),
        user_id=pl.col("session_id"),
        event_type=pl.lit("page_view"),
    )
    con = duckdb.connect()
    con.register("events", events)
    stats = insights.page_exit_stats(con, T0, T0 + timedelta(days=30))
    pages = pl.DataFrame(
        {
            "page_id": [f"p{i}" for i in range(8)],
            "title": [f"Page {i}" for i in range(8)],
            "page_type": "product",
        }
    )
    found = insights.page_insights(stats, pages, insights.InsightParams(min_page_views=10))
    exits = [r for r in found if r["kind"] == "high_exit_page"]
    assert [r["subject"] for r in exits] == ["p7"]
    assert exits[0]["value"] == pytest.approx(1.0) and exits[0]["baseline"] < 0.5


def test_page_embeddings_asset_reuses_stored_vectors(tmp_path):
    from ubap_assets.defs.recommendations import assets

    path = str(tmp_path / "w.duckdb")
    pages = _pages()
    with duckdb.connect(path) as con:
        con.register("_f", pages)
        con.execute("CREATE TABLE pages AS SELECT * FROM _f")

    def run() -> dict:
        result = dg.materialize(
            [assets.page_embeddings, dg.AssetSpec("pages")],
            resources={
                "io_manager": DuckDBWarehouseIOManager(database=path),
                "warehouse": DuckDBResource(database=path),
                "embedder": HashingEmbedder(),
            },
        )
        assert result.success
        [materialization] = result.asset_materializations_for_node("page_embeddings")
        return {key: value.value for key, value in materialization.metadata.items()}

    first = run()
    assert (first["embedded_pages"], first["reused_pages"]) == (6, 0)
    with duckdb.connect(path, read_only=True) as con:
        stored = con.execute("SELECT * FROM page_embeddings ORDER BY page_id").pl()
    second = run()
    assert (second["embedded_pages"], second["reused_pages"]) == (0, 6)
    with duckdb.connect(path) as con:
        assert con.execute("SELECT * FROM page_embeddings ORDER BY page_id").pl().equals(stored)
        con.execute("UPDATE pages SET title = 'Studio headphones' WHERE page_id = 'a'")
    third = run()
    assert (third["embedded_pages"], third["reused_pages"]) == (1, 5)
    with duckdb.connect(path, read_only=True) as con:
        text = con.execute("SELECT text FROM page_embeddings WHERE page_id = 'a'").fetchone()[0]
    assert text.startswith("Studio headphones")


def test_history_anchors_equal_the_dense_argmax_wherever_a_product_is_positive():
    from ubap_assets.core.recommend.render import history_anchors

    rng = np.random.default_rng(7)
    users, pages, k = 60, 25, 5
    dense = np.where(rng.random((users, pages)) < 0.2, rng.integers(1, 4, (users, pages)), 0)
    dense[:5] = 0  # users without history
    history = np.asarray(dense, dtype=np.float32)
    similarity = rng.normal(size=(pages, pages)).astype(np.float32)
    similarity[:, 3] = similarity[:, 4] = 0.5  # ties: the first page in catalogue order wins
    top = np.stack([rng.permutation(pages)[:k] for _ in range(users)])
    products = history[:, None, :] * similarity.T[top]
    expected = np.argmax(products, axis=2)
    found = history_anchors(sp.csr_matrix(history), similarity, top)
    positive = products.max(axis=2) > 0
    assert positive.sum() > 100
    np.testing.assert_array_equal(found[positive], expected[positive])
    assert (found[:5] == 0).all()


@pytest.mark.parametrize("density", [0.3, 0.02])
def test_nearest_columns_are_each_row_s_largest_values(density):
    rng = np.random.default_rng(7)
    users = sp.random(300, 60, density=density, random_state=8, format="csr", dtype=np.float32)
    pool = sp.random(4000, 60, density=density, random_state=9, dtype=np.float32).toarray()
    pool[:600] = pool[600]  # many equal neighbours: some rows take the plain partition
    similarity = np.asarray(
        (scorers.row_normalize(users) @ scorers.row_normalize(sp.csr_matrix(pool)).T).todense(),
        dtype=np.float32,
    )
    similarity[rng.random(300) < 0.1] = 0.0  # rows with no similar user at all
    n = 25
    columns, values = scorers.nearest_columns(similarity, n)
    assert columns.shape == values.shape == (300, n)
    # the same multiset of weights as a full partition; zero weights only pad
    full = -np.sort(-similarity, axis=1)[:, :n]
    assert np.array_equal(-np.sort(-values, axis=1), full)
    positive = values > 0
    rows = np.nonzero(positive)[0]
    assert np.array_equal(similarity[rows, columns[positive]], values[positive])
    for row in range(300):  # a neighbour is listed once
        listed = columns[row][positive[row]]
        assert len(set(listed.tolist())) == len(listed)
