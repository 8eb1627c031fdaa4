"""The API documents itself offline: Swagger UI and ReDoc from local assets, a summary and a
description on every operation, described tags and fields; numbers rounded at the edge."""

import re

import polars as pl
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from ubap_api import schemas
from ubap_api.docs_ui import DOCS_ASSETS_URL
from ubap_api.main import create_app
from ubap_api.records import records, round_row
from ubap_api.routers import (
    anomalies,
    funnels,
    meta,
    predictions,
    recommendations,
    retention,
    segments,
    summary,
    trends,
    users,
)
from ubap_api.settings import Settings
from ubap_assets.core.models import MODEL_NAMES

ROUTERS = (anomalies, funnels, meta, predictions, recommendations, retention, segments, summary)
ROUTERS += (trends, users)
URL_ATTRIBUTE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


@pytest.fixture(scope="module")
def client(sample_snapshots):
    with TestClient(create_app(Settings(snapshot_dir=sample_snapshots))) as c:
        yield c


@pytest.fixture(scope="module")
def spec(client):
    return client.get("/openapi.json").json()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_this_api(client, page):
    r = client.get(page)
    assert r.status_code == 200
    html = r.text
    assert "http://" not in html and "https://" not in html, html  # no CDN, no Google fonts
    urls = [a or b for a, b in URL_ATTRIBUTE.findall(html)]
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts, html
    for url in urls:
        assert url.startswith("/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        if url.endswith(".js"):
            assert "javascript" in asset.headers["content-type"]
            assert len(asset.content) > 100_000  # the real bundle, not a stub
        if url != "/openapi.json":
            assert url.startswith(DOCS_ASSETS_URL + "/"), url


def test_swagger_ui_has_no_online_validator_badge(client):
    assert '"validatorUrl": null' in client.get("/docs").text


def test_every_tag_is_described(spec):
    described = {tag["name"]: tag.get("description", "") for tag in spec["tags"]}
    used = {tag for item in spec["paths"].values() for op in item.values() for tag in op["tags"]}
    assert used <= set(described), used - set(described)
    assert all(len(described[tag]) > 30 for tag in used), described


def test_every_operation_has_a_written_summary_and_a_description(spec):
    routes = [r for m in ROUTERS for r in m.router.routes] + list(meta.health_router.routes)
    generated = {r.name.replace("_", " ").title() for r in routes if isinstance(r, APIRoute)}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            label = f"{method.upper()} {path}"
            assert op.get("summary") and op["summary"] not in generated, (label, op.get("summary"))
            assert len(op.get("description", "")) >= len(op["summary"]), label


def test_every_field_of_every_component_is_described(spec):
    """Responses, 422 errors included: each field says what it is (and in which unit)."""
    components = spec["components"]["schemas"]
    assert len(components) > 40
    missing = [
        f"{name}.{field}"
        for name, schema in components.items()
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description", "").strip()
    ]
    assert not missing, f"{len(missing)} fields without a description: {missing}"


def _referenced(schema, components: dict, seen: set[str]) -> set[str]:
    """Names of the components a schema refers to, transitively."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if ref:
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                _referenced(components[name], components, seen)
        for value in schema.values():
            _referenced(value, components, seen)
    elif isinstance(schema, list):
        for value in schema:
            _referenced(value, components, seen)
    return seen


def test_every_tag_answers_with_an_example(spec):
    components = spec["components"]["schemas"]
    with_examples: dict[str, set[str]] = {}
    for item in spec["paths"].values():
        for op in item.values():
            ok = op["responses"]["200"]["content"]["application/json"]["schema"]
            shown = {n for n in _referenced(ok, components, set()) if components[n].get("examples")}
            for tag in op["tags"]:
                with_examples.setdefault(tag, set()).update(shown)
    assert with_examples and all(with_examples.values()), with_examples


EXAMPLE_MODELS = [
    model
    for model in vars(schemas).values()
    if isinstance(model, type)
    and issubclass(model, BaseModel)
    and "examples" in (model.model_config.get("json_schema_extra") or {})
]


@pytest.mark.parametrize("model", EXAMPLE_MODELS, ids=lambda m: m.__name__)
def test_each_example_is_a_valid_response(model):
    """An example must pass its own model: fields spelled right, values of the right type."""
    (example,) = model.model_config["json_schema_extra"]["examples"]
    parsed = model.model_validate(example)
    fields = set(model.model_fields)
    assert set(example) <= fields, set(example) - fields
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert required <= set(example), required - set(example)
    assert parsed.model_dump(mode="json", include=set(example))


def test_high_value_lists_its_valid_models(spec, client):
    (param,) = spec["paths"]["/api/predictions/high-value/{model}"]["get"]["parameters"][:1]
    assert param["name"] == "model" and param["description"]
    enum = spec["components"]["schemas"][param["schema"]["$ref"].rsplit("/", 1)[-1]]["enum"]
    assert enum == ["best", *MODEL_NAMES]
    r = client.get("/api/predictions/high-value/gradient_boosting")
    assert r.status_code == 422
    assert all(f"'{name}'" in r.json()["detail"][0]["msg"] for name in enum), r.text


def test_routes_say_more_than_their_summary(spec):
    """What a route returns, in which unit, how to page or filter it and when it is empty."""
    for path, item in spec["paths"].items():
        for method, op in item.items():
            extra = op["description"].replace(op["summary"], "", 1).strip(" .\n")
            assert len(extra) >= 80, (f"{method.upper()} {path}", op["description"])


def test_money_and_rates_are_rounded_in_responses(client):
    rows = client.get("/api/trends/daily", params={"limit": 1000}).json()["data"]
    assert rows
    for row in rows:
        assert round(row["revenue"], 2) == row["revenue"], row["revenue"]
        for rate in ("conversion_rate", "bounce_rate", "pages_per_session"):
            assert float(f"{row[rate]:.6g}") == row[rate], (rate, row[rate])


def test_records_round_by_column_kind():
    frame = pl.DataFrame(
        {
            "revenue": [359130.96000000025, 12.3456, None],
            "conversion_rate": [0.33951234567, 1e-9 / 3, float("nan")],
            "expected": [359130.96000000025, float("inf"), -0.000123456789],
            "users": [1, 2, 3],
        }
    )
    want = [
        {"revenue": 359130.96, "conversion_rate": 0.339512, "expected": 359130.96, "users": 1},
        {"revenue": 12.35, "conversion_rate": 3.33333e-10, "expected": None, "users": 2},
        {"revenue": None, "conversion_rate": None, "expected": -0.000123457, "users": 3},
    ]
    assert records(frame) == want
    # A page large enough for the column-wise path rounds the same way.
    assert records(pl.concat([frame] * 40))[:3] == want
    assert round_row({"revenue": 0.1 + 0.2, "score": 2 / 3, "name": "x"}) == {
        "revenue": 0.3,
        "score": 0.666667,
        "name": "x",
    }
