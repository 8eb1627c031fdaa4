"""Conversion and bounce models, the model store, predictions, and the assets end to end."""

import json
import os

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest
from dagster_duckdb import DuckDBResource
from polars.testing import assert_frame_equal

from ubap_assets.core import features as fx
from ubap_assets.core import models as mdl
from ubap_assets.core.explain import phrase, top_reasons
from ubap_assets.core.predictions import PREDICTION_COLUMNS, predict_users
from ubap_assets.defs.features import assets as feature_assets
from ubap_assets.defs.features import checks as feature_checks
from ubap_assets.defs.models import assets as model_assets
from ubap_assets.defs.models import checks as model_checks
from ubap_assets.defs.predictions import assets as prediction_assets
from ubap_assets.defs.predictions import checks as prediction_checks
from ubap_assets.defs.segments import assets as segment_assets
from ubap_assets.defs.segments import checks as segment_checks
from ubap_assets.lib.model_store import ModelStore
from ubap_assets.lib.warehouse_io import DuckDBWarehouseIOManager
from ubap_assets.warehouse import tables as t

SOURCE_TABLES = ("users", "pages", "events", "user_personas")


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


@pytest.fixture(scope="module")
def world_con(tiny_world):
    con = duckdb.connect()
    _load(con, tiny_world)
    return con


@pytest.fixture(scope="module")
def plan(world_con):
    first, end = fx.event_span(world_con)
    return fx.plan_windows(first, end, horizon_days=14)


@pytest.fixture(scope="module")
def results(world_con, plan, tiny_world):
    return mdl.train_all(world_con, plan, personas=tiny_world.personas, seed=0, n_jobs=1)


def test_each_task_scores_three_models_on_the_later_window(results, plan):
    for task, result in results.items():
        m = result.metrics
        fitted = m.filter(pl.col("model") != mdl.CEILING)
        assert sorted(fitted["model"]) == sorted(mdl.MODEL_NAMES)
        for col in ("roc_auc", "pr_auc", "brier", "log_loss", "threshold", "f1"):
            assert m[col].is_finite().all(), (task, col)
        assert (fitted["roc_auc"] > 0.6).all(), (task, fitted["roc_auc"].to_list())
        # the best model is the one with the highest PR-AUC
        assert result.best == fitted.sort("pr_auc", descending=True)["model"][0]
        assert m.filter("is_best")["model"].to_list() == [result.best]
        assert (m["train_cutoff"] == plan.train_cutoff).all()
        assert (m["valid_cutoff"] == plan.valid_cutoff).all()


def test_conversion_is_compared_with_the_true_propensity_ceiling(results):
    m = results["conversion"].metrics
    ceiling = m.filter(pl.col("model") == mdl.CEILING).row(0, named=True)
    assert ceiling["auc_vs_ceiling"] == pytest.approx(1.0) and not ceiling["is_best"]
    fitted = m.filter(pl.col("model") != mdl.CEILING)
    expected = fitted["roc_auc"] / ceiling["roc_auc"]
    assert np.allclose(fitted["auc_vs_ceiling"].to_numpy(), expected.to_numpy())
    assert results["bounce"].metrics["auc_vs_ceiling"].null_count() == 3


def test_threshold_maximises_f1_on_validation():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.2).astype(int)
    p = np.clip(0.3 * y + rng.random(2000) * 0.7, 0, 1)
    m = mdl.evaluate(y, p)
    for other in np.linspace(0.05, 0.95, 19):
        pred = p >= other
        tp = (pred & (y == 1)).sum()
        f1 = 2 * tp / (pred.sum() + y.sum())
        assert f1 <= m["f1"] + 1e-9
    assert 0 < m["threshold"] < 1


def test_curves_are_thinned_and_ordered(results):
    curves = results["conversion"].curves
    per = curves.group_by("model", "curve").agg(pl.len())
    assert (per["len"] <= mdl.CURVE_POINTS).all() and per.height == 8
    roc = curves.filter((pl.col("curve") == "roc") & (pl.col("model") == "xgboost"))
    assert roc["x"].is_sorted() and roc["x"][0] == 0.0 and roc["x"][-1] == 1.0
    assert curves.select(pl.col("x", "y", "threshold").is_finite().all()).to_numpy().all()


def test_same_data_and_seed_give_the_same_models(world_con, plan, results):
    train, valid = mdl.training_data(world_con, plan, "bounce")
    again = mdl.train_task("bounce", train, valid, plan, seed=0, n_jobs=1)
    assert_frame_equal(again.metrics, results["bounce"].metrics)


def test_single_class_labels_fail_clearly(world_con, plan):
    train, valid = mdl.training_data(world_con, plan, "conversion")
    with pytest.raises(mdl.LabelError, match="single class in the training labels"):
        mdl.train_task("conversion", train.with_columns(label=pl.lit(False)), valid, plan)
    with pytest.raises(mdl.LabelError, match="no labelled users at the validation"):
        mdl.train_task("conversion", train, valid.head(0), plan)


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


def test_predictions_rank_every_user(results, world_con, plan):
    conv, bounce = results["conversion"], results["bounce"]
    features = fx.compute_features(world_con, plan.end, plan.lookback_days)
    frame = predict_users(
        features,
        conversion={"model": conv.models[conv.best], "design": conv.design},
        bounce={"model": bounce.models[bounce.best], "design": bounce.design},
        explainer={"model": conv.models["xgboost"], "design": conv.design},
        conversion_model=conv.best,
        bounce_model=bounce.best,
        bounce_threshold=bounce.threshold(),
        model_version="v1",
        scored_at=plan.end,
    )
    assert frame.columns == list(PREDICTION_COLUMNS) and frame.height == features.height
    assert frame["conversion_rank"].sort().to_list() == list(range(1, frame.height + 1))
    top = frame.sort("conversion_rank").head(20)
    assert top["conversion_probability"].min() >= frame["conversion_probability"].median()
    assert (frame["at_risk"] == (frame["at_risk_probability"] >= bounce.threshold())).all()
    # users who already bought convert more in the model's eyes than those who never visited
    joined = frame.join(features, on="user_id")
    buyers = joined.filter(pl.col("purchases") > 0)["conversion_probability"].mean()
    idle = joined.filter(pl.col("sessions") == 0)["conversion_probability"].mean()
    assert buyers > 2 * idle


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
    feature_checks.user_features_complete,
    segment_checks.segments_recover_personas,
    segment_checks.segment_profiles_consistent,
    segment_checks.user_map_matches_segments,
    model_checks.label_windows_do_not_overlap,
    model_checks.training_features_ignore_future_events,
    model_checks.no_label_derivable_from_features,
    model_checks.models_below_ceiling,
    model_checks.model_metrics_are_finite,
    prediction_checks.predictions_are_valid,
]
UPSTREAM = [dg.AssetSpec(name) for name in SOURCE_TABLES]
MY_TABLES = (
    t.USER_FEATURES,
    t.USER_SEGMENTS,
    t.SEGMENT_PROFILES,
    t.USER_MAP,
    t.MODEL_METRICS,
    t.MODEL_CARDS,
    t.MODEL_CURVES,
    t.USER_PREDICTIONS,
)


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
    assert set(evaluations) == {c.check_key.name for c in MY_CHECKS}
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
    assert "conversion_pr_auc" in shown[t.MODEL_METRICS]


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
