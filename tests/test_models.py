"""Conversion and bounce models, the model store, predictions, and the assets end to end."""

import json
import os
from datetime import datetime, timedelta

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest
import xgboost as xgb
from dagster_duckdb import DuckDBResource
from polars.testing import assert_frame_equal
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score

from tests.conftest import world_until
from ubap_assets.core import features as fx
from ubap_assets.core import model_evaluation as ev
from ubap_assets.core import models as mdl
from ubap_assets.core.daily import build_all_daily
from ubap_assets.core.explain import OUTCOMES, contributions, phrase, top_reasons
from ubap_assets.core.predictions import (
    PREDICTION_COLUMNS,
    ServedModel,
    _model_jobs,
    predict_users,
)
from ubap_assets.defs.features import assets as feature_assets
from ubap_assets.defs.features import checks as feature_checks
from ubap_assets.defs.models import assets as model_assets
from ubap_assets.defs.models import checks as model_checks
from ubap_assets.defs.predictions import assets as prediction_assets
from ubap_assets.defs.predictions import checks as prediction_checks
from ubap_assets.defs.segments import assets as segment_assets
from ubap_assets.defs.segments import checks as segment_checks
from ubap_assets.lib import blocks
from ubap_assets.lib.model_store import ModelStore
from ubap_assets.lib.warehouse_io import DuckDBWarehouseIOManager
from ubap_assets.warehouse import tables as t

SOURCE_TABLES = ("users", "pages", "events", "user_personas")
# Built from the events by core/daily.py (day-partitioned assets of the trends group).
DAILY_TABLES = (t.SESSIONS, t.USER_DAILY, t.PAGE_DAILY, t.USER_PAGE_DAILY)


def _load(con: duckdb.DuckDBPyConnection, world) -> None:
    frames = {
        "users": world.users,
        "pages": world.pages,
        "events": world.events,
        "user_personas": world.personas,
    }
    for table in SOURCE_TABLES:
        frame = frames[table]  # noqa: F841 - read by DuckDB
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM frame")
    for table in DAILY_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {table}")
    build_all_daily(con)


@pytest.fixture(scope="module")
def world_con(tiny_world):
    con = duckdb.connect()
    _load(con, tiny_world)
    return con


@pytest.fixture(scope="module")
def plan(world_con):
    first, end = fx.daily_span(world_con)
    return fx.plan_windows(first, end)


@pytest.fixture(scope="module")
def results(world_con, plan, tiny_world):
    return mdl.train_all(world_con, plan, personas=tiny_world.personas, seed=0, n_jobs=1)


def _served(result: mdl.TaskResult) -> ServedModel:
    if not result.served:
        return ServedModel.missing(result.note)
    artifact = {"model": result.models[result.best], "design": result.design}
    return ServedModel(result.best, artifact, result.threshold())


def test_each_task_is_chosen_on_validation_and_reported_on_test(results, plan):
    for task, result in results.items():
        assert result.status == mdl.OK, result.note
        m = result.metrics
        fitted = m.filter(pl.col("model") != mdl.CEILING)
        assert sorted(fitted["model"].unique()) == sorted(mdl.MODEL_NAMES)
        assert sorted(fitted["split"].unique()) == [mdl.TEST, mdl.VALIDATION]
        for col in mdl.METRIC_COLUMNS:
            assert m[col].is_finite().all(), (task, col)
        test = fitted.filter(pl.col("split") == mdl.TEST)
        assert (test["roc_auc"] > 0.6).all(), (task, test["roc_auc"].to_list())
        # the model in service has the best *validation* PR-AUC, whatever the test says
        validation = fitted.filter(pl.col("split") == mdl.VALIDATION)
        assert result.best == validation.sort("pr_auc", descending=True)["model"][0]
        assert set(m.filter("is_best")["model"]) == {result.best}
        # the threshold is set on validation and applied unchanged on test
        for family in mdl.MODEL_NAMES:
            rows = fitted.filter(pl.col("model") == family)
            assert rows["threshold"].n_unique() == 1
            assert rows["threshold"][0] == pytest.approx(result.threshold(family))
        sizes = dict(zip(m["split"], m["n"], strict=False))
        assert sizes[mdl.TEST] == result.sizes[mdl.TEST][0]
        assert (m["test_cutoff"] == plan.test_cutoff).all()
        assert m["label"][0] == mdl.LABEL_NAMES[task](plan.horizon_days)
    assert results["conversion"].label.startswith("purchase within")


def test_hyper_parameters_are_chosen_per_family_on_validation(results):
    result = results["conversion"]
    assert len(result.candidates) == sum(len(c) for c in mdl.CANDIDATES.values())
    for family in mdl.MODEL_NAMES:
        tried = [c for c in result.candidates if c["model"] == family]
        best = max(tried, key=lambda c: c["validation_pr_auc"])
        assert result.params[family] == best["params"]


def test_conversion_is_compared_with_the_true_propensity_ceiling(
    results, world_con, plan, tiny_world
):
    m = results["conversion"].metrics
    _, _, test = mdl.training_data(world_con, plan, "conversion")
    truth = test.join(tiny_world.personas, on="user_id")
    expected_ceiling = roc_auc_score(truth["label"], truth["purchase_propensity_14d"])
    for split in (mdl.VALIDATION, mdl.TEST):
        rows = m.filter(pl.col("split") == split)
        ceiling = rows.filter(pl.col("model") == mdl.CEILING).row(0, named=True)
        assert not ceiling["is_best"]
        fitted = rows.filter(pl.col("model") != mdl.CEILING)
        expected = fitted["roc_auc"] / ceiling["roc_auc"]
        assert np.allclose(fitted["auc_vs_ceiling"].to_numpy(), expected.to_numpy())
        # the true propensities rank better than any model fit on behaviour alone
        assert (fitted["roc_auc_ci_high"] < ceiling["roc_auc"]).all(), split
    tested = m.filter((pl.col("split") == mdl.TEST) & (pl.col("model") == mdl.CEILING))
    assert tested["roc_auc"][0] == pytest.approx(expected_ceiling)  # the same users, recomputed
    assert results["bounce"].metrics["auc_vs_ceiling"].null_count() == 6


def test_threshold_maximises_f1_on_validation():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.2).astype(int)
    p = np.clip(0.3 * y + rng.random(2000) * 0.7, 0, 1)
    threshold = ev.f1_threshold(y, p)
    best = ev.point_metrics(y, p, threshold)["f1"]
    for other in np.linspace(0.05, 0.95, 19):
        pred = p >= other
        tp = (pred & (y == 1)).sum()
        assert 2 * tp / (pred.sum() + y.sum()) <= best + 1e-9
    assert 0 < threshold < 1


def test_bootstrap_interval_holds_the_point_and_narrows_with_n():
    rng = np.random.default_rng(1)
    widths = []
    for n in (400, 4000, 40000):
        y = (rng.random(n) < 0.2).astype(int)
        p = np.clip(0.25 * y + 0.75 * rng.random(n), 0, 1)
        row = ev.evaluate(y, p, 0.5, seed=0)
        assert (row["n"], row["positives"]) == (n, int(y.sum()))
        for metric in ev.METRICS:
            assert row[f"{metric}_ci_low"] <= row[metric] <= row[f"{metric}_ci_high"], metric
        widths.append(row["roc_auc_ci_high"] - row["roc_auc_ci_low"])
        assert row == ev.evaluate(y, p, 0.5, seed=0)  # seeded
    assert widths[0] > 2 * widths[1] > 4 * widths[2] > 0


def test_the_counting_bootstrap_reproduces_the_exact_metrics():
    rng = np.random.default_rng(2)
    y = (rng.random(3000) < 0.1).astype(int)
    p = np.round(np.clip(0.2 * y + rng.random(3000) * 0.8, 0, 1), 3)  # ties included
    cells = ev.Cells.of(y, p, 0.4)
    counted = cells.metrics(cells.positives[None], cells.negatives[None])
    exact = ev.point_metrics(y, p, 0.4)
    for metric in ev.METRICS:
        assert counted[metric][0] == pytest.approx(exact[metric], rel=1e-9), metric


def test_too_few_positives_mark_the_task_insufficient(world_con, plan):
    train, valid, test = mdl.training_data(world_con, plan, "conversion")
    few = train.filter(~pl.col("label")).vstack(train.filter("label").head(12))
    result = mdl.train_task("conversion", few, valid, test, plan)
    assert result.status == mdl.INSUFFICIENT and not result.served and not result.models
    assert "12 positives" in result.note and "at least 50" in result.note
    assert result.metrics["status"].unique().to_list() == [mdl.INSUFFICIENT]
    assert result.metrics["roc_auc"].null_count() == result.metrics.height
    assert sorted(result.metrics["split"]) == [mdl.TEST, mdl.VALIDATION]
    # a single class is the same guard, not an exception
    single = mdl.train_task(
        "conversion", train, valid.with_columns(label=pl.lit(False)), test, plan
    )
    assert single.status == mdl.INSUFFICIENT and "0 positives" in single.note
    empty = mdl.train_task("conversion", train, valid, test.head(0), plan)
    assert empty.status == mdl.INSUFFICIENT and "among 0 users" in empty.note


def test_a_large_window_is_cut_to_a_deterministic_sample(world_con, plan, results):
    # the tiny world's windows are under the default cap: nothing sampled, nothing noted
    assert "sample" not in results["conversion"].window_users_text()
    assert all("sample" not in (n or "") for n in results["conversion"].metrics["note"])
    train, *_ = mdl.training_data(world_con, plan, "conversion")
    cut = mdl.sample_users(train, 100, seed=0)
    assert cut.height == 100 and cut["user_id"].is_sorted()  # the frame's order is kept
    assert_frame_equal(cut, mdl.sample_users(train.reverse(), 100, seed=0).reverse())
    assert set(cut["user_id"]) <= set(train["user_id"])
    assert set(cut["user_id"]) != set(mdl.sample_users(train, 100, seed=1)["user_id"])
    # nested: a larger cap keeps every user a smaller one keeps
    assert set(cut["user_id"]) <= set(mdl.sample_users(train, 300, seed=0)["user_id"])
    assert mdl.sample_users(train, 0).height == train.height
    capped = mdl.train_all(world_con, plan, seed=0, n_jobs=1, tasks=("conversion",), max_users=400)
    result = capped["conversion"]
    test_rows = result.metrics.filter(pl.col("split") == mdl.TEST)
    assert test_rows["n"].unique().to_list() == [min(400, result.populations[mdl.TEST])]
    assert result.populations["train"] > 400 and result.sizes["train"][0] == 400
    assert "a deterministic sample of users per window" in test_rows["note"][0]
    assert "(a sample of" in result.window_users_text()


def test_same_data_and_seed_give_the_same_models(world_con, plan, results, tiny_world, monkeypatch):
    train, valid, test = mdl.training_data(world_con, plan, "bounce")
    monkeypatch.setattr(blocks, "block_workers", lambda: 4)
    again = mdl.train_task("bounce", train, valid, test, plan, seed=0, n_jobs=1)
    assert_frame_equal(again.metrics, results["bounce"].metrics)
    # tasks and bootstrap blocks one at a time, not at once on threads: the same models
    monkeypatch.setattr(blocks, "block_workers", lambda: 1)
    in_turn = mdl.train_all(world_con, plan, personas=tiny_world.personas, seed=0, n_jobs=1)
    for task in mdl.TASKS:
        assert_frame_equal(in_turn[task].metrics, results[task].metrics)
        assert in_turn[task].candidates == results[task].candidates


def test_curves_are_thinned_and_ordered(results):
    curves = results["conversion"].curves
    per = curves.group_by("model", "curve").agg(pl.len())
    assert (per["len"] <= ev.CURVE_POINTS).all() and per.height == 8
    roc = curves.filter((pl.col("curve") == "roc") & (pl.col("model") == "xgboost"))
    assert roc["x"].is_sorted() and roc["x"][0] == 0.0 and roc["x"][-1] == 1.0
    assert curves.select(pl.col("x", "y", "threshold").is_finite().all()).to_numpy().all()


def test_model_store_round_trip_and_reasons(results, world_con, plan, tmp_path):
    store = ModelStore(root=str(tmp_path))
    result = results["conversion"]
    artifact = {"model": result.models["xgboost"], "design": result.design}
    path = store.save("v1", "conversion", "xgboost", artifact, {"features": result.design.names})
    assert path == "v1/conversion__xgboost.joblib" and store.versions() == ["v1"]
    loaded = store.load("v1", "conversion", "xgboost")
    features = fx.compute_features(world_con, plan.end, plan.lookback_days)
    assert np.allclose(
        mdl.predict(loaded["model"], loaded["design"], features),
        mdl.predict(result.models["xgboost"], result.design, features),
    )
    assert store.card("v1", "conversion", "xgboost")["features"] == result.design.names
    with pytest.raises(FileNotFoundError, match="materialize model_metrics"):
        store.load("v2", "conversion", "xgboost")
    with pytest.raises(ValueError, match="unsafe name"):
        store.path("../x", "conversion", "xgboost")
    reasons = top_reasons(loaded["model"], loaded["design"], features)
    assert reasons.height == features.height and reasons.null_count().sum_horizontal()[0] == 0
    assert reasons["reason_1"].str.contains(r"\((raises|lowers) the purchase chance\)$").all()


def test_contributions_add_up_to_each_family_s_score(results, world_con, plan):
    result = results["bounce"]
    x = result.design.matrix(fx.compute_features(world_con, plan.end, plan.lookback_days))[:300]
    logistic = result.models["logistic_regression"]
    intercept = logistic.steps[-1][1].intercept_[0]
    summed = contributions(logistic, x).sum(axis=1) + intercept
    assert np.allclose(summed, logistic.decision_function(x))  # log-odds
    forest = result.models["random_forest"]
    root = np.mean([e.tree_.value[0, 0, 1] / e.tree_.value[0, 0].sum() for e in forest.estimators_])
    summed = contributions(forest, x).sum(axis=1) + root
    assert np.allclose(summed, forest.predict_proba(x)[:, 1])  # probability
    booster = result.models["xgboost"]
    bias = booster.get_booster().predict(xgb.DMatrix(x), pred_contribs=True)[:, -1]
    summed = contributions(booster, x).sum(axis=1) + bias
    assert np.allclose(summed, booster.predict(x, output_margin=True), atol=1e-4)  # log-odds


def test_phrases_read_as_plain_words():
    assert phrase("add_to_cart", 3, 0.4, "purchase chance") == (
        "added 3 item(s) to the cart (raises the purchase chance)"
    )
    assert phrase("bounce_rate", 0.5, -1, "purchase chance") == (
        "50% of visits were single-page bounces (lowers the purchase chance)"
    )
    assert phrase("device=mobile", 0.0, -0.1, "purchase chance") == (
        "device is not mobile (lowers the purchase chance)"
    )


def test_predictions_rank_every_user_with_each_task_s_own_reasons(
    results, world_con, plan, monkeypatch
):
    conv, bounce = results["conversion"], results["bounce"]
    features = fx.compute_features(world_con, plan.end, plan.lookback_days)

    def scored() -> pl.DataFrame:
        return predict_users(
            features,
            conversion=_served(conv),
            bounce=_served(bounce),
            model_version="v1",
            scored_at=plan.end,
        )

    models = [r.models[r.best] for r in (conv, bounce)]
    jobs = [m.get_params().get("n_jobs") for m in models]
    monkeypatch.setattr(blocks, "block_workers", lambda: 4)
    frame = scored()
    monkeypatch.setattr(blocks, "block_workers", lambda: 1)
    assert_frame_equal(scored(), frame)  # the tasks in turn: the same rows
    assert [m.get_params().get("n_jobs") for m in models] == jobs  # the models' threads back
    assert frame.columns == list(PREDICTION_COLUMNS) and frame.height == features.height
    assert frame["conversion_rank"].sort().to_list() == list(range(1, frame.height + 1))
    top = frame.sort("conversion_rank").head(20)
    assert top["conversion_probability"].min() >= frame["conversion_probability"].median()
    assert (frame["at_risk"] == (frame["at_risk_probability"] >= bounce.threshold())).all()
    assert (
        frame["conversion_note"].null_count() == frame["bounce_note"].null_count() == frame.height
    )
    # the at-risk reasons are the bounce model's, the high-value reasons the conversion model's
    own = top_reasons(
        bounce.models[bounce.best],
        bounce.design,
        features,
        outcome=OUTCOMES["bounce"],
        prefix="at_risk_reason_",
    )
    joined = frame.join(own, on="user_id", suffix="_own")
    assert (joined["at_risk_reason_1"] == joined["at_risk_reason_1_own"]).all()
    assert frame["at_risk_reason_1"].str.ends_with("the next visit bounces)").all()
    assert frame["reason_1"].str.ends_with("the purchase chance)").all()
    assert frame["at_risk_reason_method"][0] == mdl.REASON_METHODS[bounce.best]
    assert frame["conversion_reason_method"][0] == mdl.REASON_METHODS[conv.best]
    # users who already bought convert more in the model's eyes than those who never visited
    joined = frame.join(features, on="user_id")
    buyers = joined.filter(pl.col("purchases") > 0)["conversion_probability"].mean()
    idle = joined.filter(pl.col("sessions") == 0)["conversion_probability"].mean()
    assert buyers > 2 * idle


def test_a_task_without_a_model_gets_null_scores_and_the_reason(results, world_con, plan):
    features = fx.compute_features(world_con, plan.end, plan.lookback_days)
    note = "bounce: insufficient data: 4 positives and 4,995 negatives"
    frame = predict_users(
        features,
        conversion=_served(results["conversion"]),
        bounce=ServedModel.missing(note),
        model_version="v1",
        scored_at=plan.end,
    )
    assert frame["at_risk_probability"].null_count() == frame.height
    assert frame["at_risk"].null_count() == frame["at_risk_rank"].null_count() == frame.height
    assert frame["at_risk_reason_1"].null_count() == frame.height
    assert frame["bounce_note"].unique().to_list() == [note]
    assert frame["bounce_model"].null_count() == frame.height
    assert frame["conversion_probability"].null_count() == 0


# --- the assets, end to end on a tiny warehouse -------------------------------------------

MY_ASSETS = [
    feature_assets.user_features,
    segment_assets.user_segmentation,
    segment_assets.user_map,
    segment_assets.segment_scores,
    model_assets.model_training,
    prediction_assets.user_predictions,
]
MY_CHECKS = [
    feature_checks.user_features_ignore_future_events,
    feature_checks.user_features_match_sessions,
    feature_checks.user_features_complete,
    segment_checks.segments_recover_personas,
    segment_checks.segment_profiles_consistent,
    segment_checks.user_map_matches_segments,
    model_checks.label_windows_read_only_their_window,
    model_checks.training_features_ignore_future_events,
    model_checks.no_label_derivable_from_features,
    model_checks.models_below_ceiling,
    model_checks.served_models_beat_chance,
    model_checks.model_metrics_are_sound,
    prediction_checks.predictions_are_valid,
]
MODEL_CHECKS = MY_CHECKS[6:]
UPSTREAM = [dg.AssetSpec(name) for name in (*SOURCE_TABLES, *DAILY_TABLES)]
MY_TABLES = (
    t.USER_FEATURES,
    t.USER_SEGMENTS,
    t.SEGMENT_PROFILES,
    t.USER_MAP,
    t.SEGMENT_SCORES,
    t.MODEL_METRICS,
    t.MODEL_CARDS,
    t.MODEL_CURVES,
    t.USER_PREDICTIONS,
)
MODEL_TABLES = (t.MODEL_METRICS, t.MODEL_CARDS, t.MODEL_CURVES, t.USER_PREDICTIONS)


def _resources(tmp_path) -> dict:
    db = str(tmp_path / "warehouse.duckdb")
    return {
        "io_manager": DuckDBWarehouseIOManager(database=db),
        "warehouse": DuckDBResource(database=db),
        "model_store": ModelStore(root=str(tmp_path / "models")),
    }


def _tables(tmp_path) -> set[str]:
    # the pipeline's own resource: a failed step may still hold a connection of its config
    with DuckDBResource(database=str(tmp_path / "warehouse.duckdb")).get_connection() as con:
        rows = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    return {r[0] for r in rows}


@pytest.fixture(scope="module")
def warehouse_dir(tiny_world, tmp_path_factory):
    path = tmp_path_factory.mktemp("models-e2e")
    with duckdb.connect(str(path / "warehouse.duckdb")) as con:
        _load(con, tiny_world)
    return path


@pytest.fixture(scope="module")
def materialized(warehouse_dir):
    result = dg.materialize(
        [*UPSTREAM, *MY_ASSETS, *MY_CHECKS],
        resources=_resources(warehouse_dir),
        selection=dg.AssetSelection.assets(*MY_TABLES),
        raise_on_error=False,
    )
    return result


@pytest.mark.slow
def test_assets_materialize_with_passing_guards(materialized, warehouse_dir):
    assert materialized.success
    evaluations = {c.check_name: c for c in materialized.get_asset_check_evaluations()}
    assert set(evaluations) == {key.name for c in MY_CHECKS for key in c.check_keys}
    blocking_failed = [
        n
        for n, c in evaluations.items()
        if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR
    ]
    assert not blocking_failed
    with duckdb.connect(str(warehouse_dir / "warehouse.duckdb")) as con:
        for table in MY_TABLES:
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, table
        cards = con.execute("SELECT * FROM model_cards").pl()
        version = cards["model_version"][0]
        predicted = con.execute("SELECT DISTINCT model_version FROM user_predictions").fetchall()
    assert predicted == [(version,)]
    store = ModelStore(root=str(warehouse_dir / "models"))
    assert store.versions() == [version]
    for row in cards.iter_rows(named=True):
        assert (store.root_path() / row["artifact_path"]).exists()
        assert (
            json.loads(row["features_json"])
            == store.card(version, row["task"], row["model"])["features"]
        )
    metrics = materialized.asset_materializations_for_node("model_training")
    shown = {m.asset_key.path[-1]: m.metadata for m in metrics}
    assert shown[t.MODEL_METRICS]["conversion_status"].value == mdl.OK
    assert "[" in shown[t.MODEL_METRICS]["conversion_test_pr_auc"].value  # with its interval
    # the cadence: the tiny world's data end on Monday 2026-02-16, a weekly boundary with no
    # day of data after it yet, so it trains to the boundary before (core/cadence.py)
    for table in (t.MODEL_METRICS, t.MODEL_CARDS):
        assert shown[table]["training_end"].value == "2026-02-09T00:00:00"
        assert shown[table]["retrain_every_days"].value == 7
        assert shown[table]["next_training_end"].value == "2026-02-16T00:00:00"
    assert (cards["training_end"] == cards["label_window_test_end"]).all()
    assert cards["retrain_every_days"].to_list() == [7] * cards.height
    assert (cards["next_training_end"] - cards["training_end"]).dt.total_days().to_list() == [
        7
    ] * cards.height
    scored = materialized.asset_materializations_for_node("user_predictions")[0].metadata
    assert scored["models_training_end"].value == "2026-02-09T00:00:00"
    assert scored["scored_at"].value == "2026-02-16T00:00:00"  # the data end
    stored = store.card(version, "conversion", "xgboost")["plan"]
    assert (stored["end"], stored["retrain_every_days"]) == ("2026-02-09T00:00:00", 7)


def test_a_run_mid_period_trains_on_the_windows_of_the_period_s_boundary(tiny_world):
    """Data ending on a Thursday train exactly what data ending on the Monday before do (the
    first day after the boundary, which completes the sessions that crossed into it): the same
    plan, the same features, labels and metrics (weekly cadence)."""
    boundary = datetime(2026, 2, 9)  # a Monday
    day = timedelta(days=1)
    at_boundary = world_until(tiny_world, boundary + day, whole_sessions=True)
    mid_period = world_until(tiny_world, boundary + 3 * day, whole_sessions=False)
    plan, data_end = mdl.training_plan(at_boundary, 7)
    later, later_end = mdl.training_plan(mid_period, 7)
    assert (data_end, later_end) == (boundary + day, boundary + 3 * day)
    assert later == plan and plan.end == boundary and plan.retrain_every_days == 7
    assert plan.next_training_end == boundary + timedelta(days=7)
    # data ending at the boundary itself still train to the boundary before it
    assert mdl.training_plan(world_until(tiny_world, boundary, True), 7)[0].end < boundary
    # every day a retraining: the mid-period run plans up to the day before its last
    assert mdl.training_plan(mid_period, 1)[0].end == later_end - day
    first = mdl.train_all(at_boundary, plan, seed=0, n_jobs=1, tasks=("bounce",))
    second = mdl.train_all(mid_period, later, seed=0, n_jobs=1, tasks=("bounce",))
    assert_frame_equal(first["bounce"].metrics, second["bounce"].metrics)
    for split in fx.SPLITS:
        for labeller in mdl.LABELLERS.values():
            frames = [
                labeller(
                    con,
                    fx.compute_features(con, plan.cutoff(split), plan.lookback_days),
                    plan.cutoff(split),
                    plan.horizon_days,
                )
                for con in (at_boundary, mid_period)
            ]
            assert_frame_equal(*frames)
    # a history too short before the boundary is the empty-window error, and names it
    with pytest.raises(fx.FeatureWindowError, match="empty window.*boundary 2026-02-09"):
        mdl.training_plan(mid_period, 7, horizon_days=14)


def _materialize_models(world, tmp_path):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        _load(con, world)
    result = dg.materialize(
        [*UPSTREAM, *MY_ASSETS, *MODEL_CHECKS],
        resources=_resources(tmp_path),
        selection=dg.AssetSelection.assets(*MODEL_TABLES),
        raise_on_error=False,
    )
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        tables = {
            name: con.execute(f"SELECT * FROM {name}").pl()
            for name in (t.MODEL_METRICS, t.MODEL_CARDS, t.USER_PREDICTIONS)
        }
    evaluations = {c.check_name: c for c in result.get_asset_check_evaluations()}
    return result, tables, evaluations


def _no_bounces(world):
    """Every session gets a search at its first event: no session bounces."""
    firsts = (
        world.events.sort("event_ts")
        .group_by("session_id", maintain_order=True)
        .first()
        .with_columns(
            event_id=pl.col("event_id") + "-search",
            event_type=pl.lit("search"),
            revenue=pl.lit(None, pl.Float64),
        )
    )
    return type(world)(
        users=world.users,
        pages=world.pages,
        events=pl.concat([world.events, firsts.select(world.events.columns)]),
        personas=world.personas,
        anomalies=world.anomalies,
    )


@pytest.mark.slow
def test_mid_period_trains_to_the_boundary_and_scores_at_the_data_end(tiny_world, tmp_path):
    def load(until: datetime) -> None:
        events = tiny_world.events.filter(pl.col("event_ts") < until)
        world = type(tiny_world)(
            tiny_world.users, tiny_world.pages, events, tiny_world.personas, tiny_world.anomalies
        )
        with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
            _load(con, world)

    def run(*tables: str) -> dict[str, dict]:
        result = dg.materialize(
            [*UPSTREAM, *MY_ASSETS],
            resources=_resources(tmp_path),
            selection=dg.AssetSelection.assets(*tables),
            raise_on_error=False,
        )
        assert result.success
        shown = {}
        for node in ("model_training", "user_predictions"):
            for m in result.asset_materializations_for_node(node):
                shown[m.asset_key.path[-1]] = {k: v.value for k, v in m.metadata.items()}
        return shown

    load(datetime(2026, 2, 12))  # a Thursday: the period started on Monday 2026-02-09
    shown = run(*MODEL_TABLES)
    cards = shown[t.MODEL_CARDS]
    assert (cards["training_end"], cards["data_end"]) == (
        "2026-02-09T00:00:00",
        "2026-02-12T00:00:00",
    )
    assert cards["next_training_end"] == "2026-02-16T00:00:00"
    scored = shown[t.USER_PREDICTIONS]
    assert scored["scored_at"] == "2026-02-12T00:00:00"
    assert scored["models_training_end"] == "2026-02-09T00:00:00"
    # the next night: one more day of data, scored with the stored models, nothing retrained
    load(datetime(2026, 2, 13))
    again = run(t.USER_PREDICTIONS)[t.USER_PREDICTIONS]
    assert again["scored_at"] == "2026-02-13T00:00:00"
    assert again["model_version"] == scored["model_version"] == cards["model_version"]
    assert ModelStore(root=str(tmp_path / "models")).versions() == [cards["model_version"]]


@pytest.mark.slow
def test_single_class_bounce_labels_do_not_block_conversion(tiny_world, tmp_path):
    result, tables, evaluations = _materialize_models(_no_bounces(tiny_world), tmp_path)
    assert result.success
    metrics, cards, predictions = (
        tables[t.MODEL_METRICS],
        tables[t.MODEL_CARDS],
        tables[t.USER_PREDICTIONS],
    )
    bounce = metrics.filter(pl.col("task") == "bounce")
    assert bounce["status"].unique().to_list() == [mdl.INSUFFICIENT]
    assert bounce["note"][0].startswith("bounce: insufficient data: 0 positives")
    assert not bounce["is_best"].any() and bounce["roc_auc"].null_count() == bounce.height
    assert cards.filter((pl.col("task") == "bounce") & pl.col("is_best")).is_empty()
    conversion = metrics.filter((pl.col("task") == "conversion") & pl.col("is_best"))
    assert conversion["status"].unique().to_list() == [mdl.OK]
    # nothing is served as a bounce model; conversion is scored as usual
    assert predictions["at_risk_probability"].null_count() == predictions.height
    assert predictions["at_risk"].null_count() == predictions.height
    assert predictions["bounce_note"].str.contains("insufficient data").all()
    assert predictions["conversion_probability"].null_count() == 0
    assert evaluations["predictions_are_valid"].passed
    assert evaluations["model_metrics_are_sound"].passed
    assert evaluations["served_models_beat_chance"].passed  # scores conversion only


@pytest.mark.slow
def test_a_world_with_few_positives_serves_no_model_and_skips_its_checks(tiny_world, tmp_path):
    few = tiny_world.users.head(120)["user_id"]
    small = type(tiny_world)(
        users=tiny_world.users.filter(pl.col("user_id").is_in(few)),
        pages=tiny_world.pages,
        events=tiny_world.events.filter(pl.col("user_id").is_in(few)),
        personas=tiny_world.personas.filter(pl.col("user_id").is_in(few)),
        anomalies=tiny_world.anomalies,
    )
    result, tables, evaluations = _materialize_models(small, tmp_path)
    assert result.success  # insufficient data is a status, not a failure
    metrics, predictions = tables[t.MODEL_METRICS], tables[t.USER_PREDICTIONS]
    assert metrics["status"].unique().to_list() == [mdl.INSUFFICIENT]
    assert metrics["note"].str.contains(r"positives and [\d,]+ negatives among").all()
    assert metrics["model"].null_count() == metrics.height
    for column in ("conversion_probability", "at_risk_probability", "reason_1"):
        assert predictions[column].null_count() == predictions.height, column
    assert predictions["conversion_note"].str.contains("insufficient data").all()
    # the checks that cannot score anything are skipped (no evaluation), not passed
    skipped = {"no_label_derivable_from_features", "served_models_beat_chance"}
    assert not skipped & set(evaluations)
    assert evaluations["model_metrics_are_sound"].passed
    assert evaluations["label_windows_read_only_their_window"].passed


@pytest.mark.slow
def test_bad_input_fails_the_run_and_publishes_nothing(tiny_world, tmp_path):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        _load(con, tiny_world)
    # 42 days of events cannot hold two 30-day label windows and a lookback
    result = dg.materialize(
        [*UPSTREAM, *MY_ASSETS],
        resources=_resources(tmp_path),
        selection=dg.AssetSelection.assets(t.MODEL_METRICS, t.MODEL_CARDS, t.MODEL_CURVES),
        run_config=dg.RunConfig({"model_training": model_assets.ModelsConfig(horizon_days=30)}),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error
    assert "empty window" in failure.message and "horizon_days" in failure.message
    assert not {t.MODEL_METRICS, t.MODEL_CARDS, t.MODEL_CURVES} & _tables(tmp_path)
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
def test_too_few_users_fail_segmentation_cleanly(tiny_world, tmp_path):
    few = tiny_world.users.head(12)["user_id"]
    small = type(tiny_world)(
        users=tiny_world.users.filter(pl.col("user_id").is_in(few)),
        pages=tiny_world.pages,
        events=tiny_world.events.filter(pl.col("user_id").is_in(few)),
        personas=tiny_world.personas.filter(pl.col("user_id").is_in(few)),
        anomalies=tiny_world.anomalies,
    )
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        _load(con, small)
    result = dg.materialize(
        [*UPSTREAM, *MY_ASSETS],
        resources=_resources(tmp_path),
        selection=dg.AssetSelection.assets(t.USER_FEATURES, t.USER_SEGMENTS, t.SEGMENT_PROFILES),
        raise_on_error=False,
    )
    assert not result.success
    message = result.get_step_failure_events()[0].event_specific_data.error.message
    assert "too few users for k" in message
    assert not {t.USER_SEGMENTS, t.SEGMENT_PROFILES} & _tables(tmp_path)


def test_the_model_store_keeps_the_newest_versions_and_the_one_in_service(tmp_path):
    store = ModelStore(root=str(tmp_path))
    for age, version in enumerate(["v5", "v4", "v3", "v2", "v1"]):  # v1 is the oldest
        store.save(version, "conversion", "logreg", {"fitted": version}, {"v": version})
        stamp = 1_000_000 - age * 1000
        os.utime(tmp_path / version, (stamp, stamp))
    removed = store.prune(keep=2, protect={"v1"})
    assert sorted(removed) == ["v2", "v3"]
    assert store.versions() == ["v1", "v4", "v5"]
    with pytest.raises(ValueError, match="keep at least"):
        store.prune(keep=0)


def test_scoring_lowers_a_model_s_threads_for_the_call_and_never_raises_them():
    forest, booster = RandomForestClassifier(n_jobs=2), xgb.XGBClassifier(n_jobs=1)
    with _model_jobs([forest, booster], 1):
        assert (forest.n_jobs, booster.n_jobs) == (1, 1)
    with _model_jobs([forest, booster], 4):
        assert (forest.n_jobs, booster.n_jobs) == (2, 1)  # as trained: xgboost keeps one
    assert (forest.n_jobs, booster.n_jobs) == (2, 1)
