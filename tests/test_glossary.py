"""One name and one definition per measure: the glossary, its page, and where it is used."""

from pathlib import Path

from ubap_api.schemas import SegmentProfile, TrendMetrics
from ubap_assets.core.metrics import GLOSSARY, SESSION_BOUNCE, describe

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def test_the_glossary_page_lists_every_measure_with_its_definition():
    page = DOCS.read_text()
    for key, definition in GLOSSARY.items():
        assert f"| {definition.name} | `{key}` |" in page, key
        assert definition.definition in page, key


def test_session_and_user_rates_have_different_names():
    names = [d.name.lower() for d in GLOSSARY.values()]
    assert len(set(names)) == len(names)
    assert "conversion rate" not in names  # never unqualified
    levels = {GLOSSARY[k].level for k in ("session_conversion_rate", "buyer_share")}
    assert levels == {"session", "user"}


def test_one_bounce_everywhere():
    assert SESSION_BOUNCE in GLOSSARY["bounce_rate"].definition
    assert "next session" in GLOSSARY["next_session_bounce"].definition.lower()


def test_api_fields_take_their_description_from_the_glossary():
    assert TrendMetrics.model_fields["conversion_rate"].description.startswith(
        describe("session_conversion_rate")
    )
    assert TrendMetrics.model_fields["bounce_rate"].description.startswith(describe("bounce_rate"))
    assert SegmentProfile.model_fields["buyer_share"].description.startswith(
        describe("buyer_share")
    )
    assert "conversion_rate" not in SegmentProfile.model_fields
