"""The dashboard over the snapshot the real pipeline publishes: every page renders its key
elements from it, with no exception and no error box."""

import pytest

from tests.test_dashboard import EXPECTED, PAGE_FILES, _no_exception, _open
from ubap_assets.warehouse.snapshots import current_snapshot


@pytest.mark.slow
@pytest.mark.parametrize("page", list(PAGE_FILES))
def test_every_page_renders_from_the_pipeline_snapshot(materialized_graph, monkeypatch, page):
    directory = materialized_graph.snapshot_dir
    monkeypatch.setenv("UBAP_SNAPSHOT_DIR", str(directory))
    at = _open(page)
    _no_exception(at)
    title, charts, tables, extra = EXPECTED[page]
    if page == "pipeline":
        # its chart and one table break down rejected rows: synthetic data has none
        charts, tables = 0, tables - 1
    assert at.title[0].value == title
    assert len(at.get("vega_lite_chart")) >= charts
    assert len(at.dataframe) >= tables
    assert len(at.get("download_button")) == len(at.dataframe)
    assert extra(at)
    assert current_snapshot(directory).snapshot_id in at.sidebar.caption[0].value
