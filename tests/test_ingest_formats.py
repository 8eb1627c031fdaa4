"""Realistic files of each supported shape, and the malformed ones real exports contain."""

import json
from datetime import date, datetime

import polars as pl
import pytest

from ubap_assets.core.ingest import IngestError, ingest_files
from ubap_assets.core.schema import EVENT_TYPES, EVENTS_SCHEMA, PAGES_SCHEMA

NATIVE = [
    ["e1", "u1", "s1", "2026-01-05T10:00:00Z", "page_view", "p1", "mobile", "organic", ""],
    ["e2", "u1", "s1", "2026-01-05T10:00:30Z", "add_to_cart", "p1", "mobile", "organic", ""],
    ["e3", "u1", "s1", "2026-01-05T10:01:00Z", "purchase", "p9", "mobile", "organic", "19.99"],
    ["e4", "u2", "s2", "2026-01-06T08:00:00Z", "search", "p2", "desktop", "paid", ""],
]
COLUMNS = "event_id user_id session_id event_ts event_type page_id device traffic_source revenue"


def _write(path, text: str, encoding: str = "utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def _lines(path, records: list[dict]):
    return _write(path, "".join(json.dumps(r) + "\n" for r in records))


def _clean(result) -> None:
    """What every result must satisfy: exact schemas, known event types, no NaN."""
    assert result.events.schema == pl.Schema(EVENTS_SCHEMA)
    assert result.pages.schema == pl.Schema(PAGES_SCHEMA)
    assert set(result.events["event_type"]) <= set(EVENT_TYPES)
    assert result.events.select(pl.col("revenue").is_nan().any()).item() in (False, None)
    assert result.events["event_ts"].is_sorted()
    pages = set(result.pages["page_id"])
    assert set(result.events["page_id"]) <= pages


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_any_delimiter_with_a_byte_order_mark(tmp_path, delimiter):
    rows = [delimiter.join(COLUMNS.split())] + [delimiter.join(r) for r in NATIVE]
    _write(tmp_path / "in" / "events.csv", "\n".join(rows) + "\n", encoding="utf-8-sig")
    result = ingest_files(str(tmp_path / "in"))
    _clean(result)
    assert result.events["event_id"].to_list() == ["e1", "e2", "e3", "e4"]
    assert result.events["revenue"].to_list() == [None, None, 19.99, None]
    assert result.stats["unknown_columns"] == 0 and result.rejects.height == 0


def test_segment_track_log_as_json_lines(tmp_path):
    ctx = {
        "device": {"type": "mobile"},
        "campaign": {"source": "newsletter"},
        "location": {"country": "FR"},
        "page": {
            "path": "/checkout/confirmation",
            "url": "https://shop.example/checkout/confirmation",
        },
    }
    records = [
        {
            "messageId": "m1",
            "type": "page",
            "userId": None,
            "anonymousId": "anon-1",
            "timestamp": "2026-01-05T10:00:00.123Z",
            "name": "Home",
            "properties": {"path": "/", "url": "https://shop.example/", "title": "Home"},
            "context": ctx,
        },
        {
            "messageId": "m2",
            "type": "track",
            "event": "Product Viewed",
            "userId": "user-1",
            "anonymousId": "anon-1",
            "timestamp": "2026-01-05T11:01:00+01:00",
            "properties": {
                "product_id": "sku-1",
                "name": "Quiet 700 ANC",
                "price": 299,
                "category": "Headphones",
                "brand": "Quiet",
                "url": "https://shop.example/p/sku-1",
            },
            "context": ctx,
        },
        {
            "messageId": "m3",
            "type": "track",
            "event": "Product Added",
            "userId": "user-1",
            "timestamp": "2026-01-05T10:02:00Z",
            "properties": {"product_id": "sku-1", "price": 299.0},
            "context": ctx,
        },
        {
            "messageId": "m4",
            "type": "track",
            "event": "Order Completed",
            "userId": "user-1",
            "timestamp": "2026-01-05T10:05:00Z",
            "properties": {"revenue": 299.0},
            "context": ctx,
        },
        {
            "messageId": "m5",
            "type": "identify",
            "userId": "user-1",
            "timestamp": "2026-01-05T10:06:00Z",
            "traits": {"email": "a@example.com"},
        },
        {
            "messageId": "m6",
            "type": "track",
            "event": "Products Searched",
            "userId": "user-2",
            "timestamp": "2026-01-06T09:00:00-05:00",
            "properties": {"query": "ssd"},
        },
    ]
    _lines(tmp_path / "in" / "segment.jsonl", records)
    result = ingest_files(str(tmp_path / "in"), "segment")
    _clean(result)
    ev = result.events
    assert ev["event_id"].to_list() == ["m1", "m2", "m3", "m4", "m6"]
    assert ev["event_type"].to_list() == [
        "page_view",
        "page_view",
        "add_to_cart",
        "purchase",
        "search",
    ]
    assert ev["user_id"].to_list() == ["anon-1"] + ["user-1"] * 3 + ["user-2"]
    assert ev["event_ts"].to_list()[-1] == datetime(2026, 1, 6, 14, 0)  # -05:00 to UTC
    assert ev["page_id"].to_list()[:4] == ["/", "sku-1", "sku-1", "/checkout/confirmation"]
    assert ev["revenue"].to_list() == [None, None, None, 299.0, None]
    assert ev["device"].to_list()[:4] == ["mobile"] * 4 and ev["device"][4] == "unknown"
    assert ev["traffic_source"][0] == "newsletter"
    assert result.stats["ignored:identify"] == 1 and result.stats["rows_ignored"] == 1
    assert result.stats["unknown_column:traits.email"] == 1
    sku = result.pages.filter(pl.col("page_id") == "sku-1").row(0, named=True)
    assert sku["title"] == "Quiet 700 ANC" and sku["price"] == 299.0
    assert sku["category"] == "Headphones" and sku["url"] == "https://shop.example/p/sku-1"
    assert result.users.filter(pl.col("user_id") == "anon-1")["country"].item() == "FR"


def test_segment_export_flattened_to_csv(tmp_path):
    _write(
        tmp_path / "in" / "segment.csv",
        "message_id,user_id,anonymous_id,event,timestamp,properties_url,properties_revenue\n"
        "m1,,a1,Page Viewed,2026-01-05T10:00:00Z,https://shop.example/deals,\n"
        "m2,u1,a1,Order Completed,2026-01-05T10:03:00Z,https://shop.example/checkout,42.5\n",
    )
    result = ingest_files(str(tmp_path / "in"), "segment")
    _clean(result)
    assert result.events["user_id"].to_list() == ["a1", "u1"]
    assert result.events["page_id"].to_list() == ["/deals", "/checkout"]
    assert result.events["revenue"].to_list() == [None, 42.5]
    assert dict(zip(result.pages["page_id"], result.pages["page_type"], strict=True)) == {
        "/checkout": "checkout",
        "/deals": "deals",
    }


def test_ecommerce_store_log(tmp_path):
    _write(
        tmp_path / "in" / "2019-Nov.csv",
        "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,"
        "user_session\n"
        "2019-11-01 00:00:00 UTC,view,1003461,2053013555631882655,electronics.smartphone,xiaomi,"
        "489.07,520088904,4d3b30da-a5e4-49df-b1a8-ba5943f1dd33\n"
        "2019-11-01 00:00:05 UTC,cart,1003461,2053013555631882655,electronics.smartphone,xiaomi,"
        "489.07,520088904,4d3b30da-a5e4-49df-b1a8-ba5943f1dd33\n"
        "2019-11-01 00:01:10 UTC,remove_from_cart,1003461,2053013555631882655,"
        "electronics.smartphone,xiaomi,489.07,520088904,4d3b30da-a5e4-49df-b1a8-ba5943f1dd33\n"
        "2019-11-01 00:02:00 UTC,purchase,5000088,2053013566100866035,appliances.sewing_machine,"
        "janome,293.65,530496790,8e5f4f83-366c-4f70-860e-ca7417414283\n"
        "2019-11-01 00:02:00 UTC,purchase,5000088,2053013566100866035,appliances.sewing_machine,"
        "janome,293.65,530496790,8e5f4f83-366c-4f70-860e-ca7417414283\n"
        "2019-11-01 00:03:00 UTC,view,17302664,2053013553853497655,,creed,28.31,561587266,"
        "755422e7-9040-477b-9bd2-6a6e8fd97387\n",
    )
    result = ingest_files(str(tmp_path / "in"), "ecommerce")
    _clean(result)
    ev = result.events
    assert ev["event_type"].to_list() == ["page_view", "add_to_cart", "purchase", "page_view"]
    assert ev["revenue"].to_list() == [None, None, 293.65, None]
    assert ev["session_id"][0] == "4d3b30da-a5e4-49df-b1a8-ba5943f1dd33"
    assert ev["event_ts"][0] == datetime(2019, 11, 1)
    assert result.stats["duplicates"] == 1 and result.stats["ignored:remove_from_cart"] == 1
    assert result.stats["sessions_derived"] == 0
    phone = result.pages.filter(pl.col("page_id") == "1003461").row(0, named=True)
    assert phone["title"] == "Xiaomi Smartphone" and phone["category"] == "Electronics"
    assert phone["page_type"] == "product" and phone["price"] == 489.07
    assert "Electronics > Smartphone" in phone["description"]
    no_category = result.pages.filter(pl.col("page_id") == "17302664").row(0, named=True)
    assert no_category["title"] == "Creed" and no_category["category"] == "Other"


def test_ga4_flattened_export_as_parquet(tmp_path):
    base = 1_767_607_200_000_000  # 2026-01-05 10:00:00 UTC in microseconds
    frame = pl.DataFrame(
        {
            "event_date": ["20260105"] * 5,
            "event_timestamp": [base + i * 60_000_000 for i in range(5)],
            "event_name": ["session_start", "page_view", "view_item", "begin_checkout", "purchase"],
            "user_pseudo_id": ["123.456"] * 5,
            "user_id": [None] * 5,
            "ga_session_id": [1767607200] * 5,
            "page_location": [
                "https://shop.example/?gclid=x",
                "https://shop.example/?gclid=x",
                "https://shop.example/product/espresso-pro",
                "https://shop.example/checkout",
                "https://shop.example/checkout/thanks",
            ],
            "page_title": ["Home", "Home", "Espresso Pro", "Checkout", "Thanks"],
            "device": [{"category": "desktop"}] * 5,
            "geo": [{"country": "Germany"}] * 5,
            "traffic_source": [{"source": "google", "medium": "cpc"}] * 5,
            "ecommerce": [{"purchase_revenue": None}] * 4 + [{"purchase_revenue": 349.0}],
        }
    )
    frame.write_parquet(tmp_path / "in" / "events_20260105.parquet", mkdir=True)
    result = ingest_files(str(tmp_path / "in"), "ga4")
    _clean(result)
    ev = result.events
    assert ev["event_type"].to_list() == ["page_view", "page_view", "checkout_start", "purchase"]
    assert ev["event_ts"][0] == datetime(2026, 1, 5, 10, 1)
    assert ev["session_id"].unique().to_list() == ["123.456-1767607200"]
    assert ev["page_id"].to_list() == [
        "/",
        "/product/espresso-pro",
        "/checkout",
        "/checkout/thanks",
    ]
    assert ev["device"].unique().to_list() == ["desktop"]
    assert ev["traffic_source"].unique().to_list() == ["google"]
    assert ev["revenue"].to_list() == [None, None, None, 349.0]
    assert result.stats["ignored:session_start"] == 1
    assert result.users["country"].item() == "Germany"
    espresso = result.pages.filter(pl.col("page_id") == "/product/espresso-pro").row(0, named=True)
    assert espresso["title"] == "Espresso Pro" and espresso["page_type"] == "product"


def test_mixed_time_zones_and_a_toml_mapping(tmp_path):
    mapping = _write(
        tmp_path / "shop.toml",
        'name = "shop"\ntime_zone = "America/New_York"\nunmapped_event_types = "click"\n'
        '[columns]\nuser_id = "customer"\nevent_ts = "when"\nevent_type = "what"\n'
        'page_id = "page"\nsession_id = { concat = ["customer", "visit"], sep = ":" }\n'
        'device = { value = "tablet" }\n'
        '[event_types]\n"Viewed Page" = "page_view"\n"Heartbeat" = "ignore"\n',
    )
    _write(
        tmp_path / "in" / "log.csv",
        "customer,visit,when,what,page,note\n"
        "c1,1,2026-01-05 10:00:00,Viewed Page,home,naive: New York time\n"
        "c1,1,2026-01-05T15:05:00Z,Viewed Page,home,UTC\n"
        "c1,1,2026-01-05T17:10:00+02:00,Zoomed,home,offset\n"
        "c1,1,1767629400,Viewed Page,home,epoch seconds\n"
        "c1,1,2026-01-05T15:20:00Z,Heartbeat,home,ignored\n",
    )
    result = ingest_files(str(tmp_path / "in"), str(mapping))
    _clean(result)
    ev = result.events
    assert ev["event_ts"].to_list() == [
        datetime(2026, 1, 5, 15, 0),
        datetime(2026, 1, 5, 15, 5),
        datetime(2026, 1, 5, 15, 10),
        datetime(2026, 1, 5, 16, 10),
    ]
    assert ev["event_type"].to_list() == ["page_view", "page_view", "click", "page_view"]
    assert ev["session_id"].unique().to_list() == ["c1:1"]
    assert ev["device"].unique().to_list() == ["tablet"]
    assert result.stats["unknown_column:note"] == 1 and result.stats["ignored:Heartbeat"] == 1


def test_custom_timestamp_format_in_a_json_mapping_and_a_json_array(tmp_path):
    mapping = _write(
        tmp_path / "m.json",
        json.dumps(
            {
                "columns": {
                    "user_id": "uid",
                    "event_ts": "at",
                    "event_type": "kind",
                    "page_url": "link",
                },
                "timestamp_format": "%d/%m/%Y %H:%M",
                "time_zone": "Europe/Berlin",
            }
        ),
    )
    _write(
        tmp_path / "in" / "export.json",
        json.dumps(
            [
                {"uid": 7, "at": "05/01/2026 11:00", "kind": "page_view", "link": "/blog/a"},
                {"uid": 7, "at": "31/02/2026 11:00", "kind": "page_view", "link": "/blog/a"},
            ]
        ),
    )
    result = ingest_files(str(tmp_path / "in"), str(mapping), max_reject_share=0.5)
    assert result.events["event_ts"].to_list() == [datetime(2026, 1, 5, 10, 0)]
    assert result.events["user_id"].to_list() == ["7"]
    assert result.rejects["reason"].to_list() == ["bad_timestamp: '31/02/2026 11:00'"]


def test_empty_and_header_only_files_are_skipped_with_a_count(tmp_path):
    _write(tmp_path / "in" / "a_empty.csv", "")
    _write(tmp_path / "in" / "b_header.csv", COLUMNS.replace(" ", ",") + "\n")
    _write(tmp_path / "in" / "c_blank.jsonl", "\n\n")
    _write(tmp_path / "in" / "d.csv", COLUMNS.replace(" ", ",") + "\n" + ",".join(NATIVE[0]))
    result = ingest_files(str(tmp_path / "in"))
    assert result.events.height == 1
    assert result.stats["empty_files"] == 3 and result.stats["files_read"] == 4


def test_nothing_to_read_is_a_clear_error(tmp_path):
    _write(tmp_path / "only" / "empty.csv", "\ufeff")
    with pytest.raises(IngestError, match="no event rows in 1 file.*empty.csv.*Fix"):
        ingest_files(str(tmp_path / "only"))
    with pytest.raises(IngestError, match="no event files found.*UBAP_SOURCE"):
        ingest_files(str(tmp_path / "nowhere"))


def test_a_file_in_another_shape_points_at_the_right_mapping(tmp_path):
    _lines(
        tmp_path / "in" / "track.jsonl",
        [{"userId": "u1", "event": "Product Viewed", "timestamp": "2026-01-05T10:00:00Z"}],
    )
    with pytest.raises(IngestError) as caught:
        ingest_files(str(tmp_path / "in"))
    message = str(caught.value)
    assert "missing_column" in message and "UBAP_SOURCE_MAPPING=segment" in message
    assert "100.0%" in message


def test_ragged_rows_duplicates_and_broken_json_lines(tmp_path):
    header = COLUMNS.replace(" ", ",")
    _write(
        tmp_path / "in" / "a.csv",
        header + "\n" + ",".join(NATIVE[0]) + "\n" + ",".join(NATIVE[0]) + "\n"
        "e9,u9,s9,2026-01-05T10:00:00Z\n"  # a cut-off row: no event type
         + ",".join(NATIVE[1]) + ",surplus,fields\n",
    )
    _write(
        tmp_path / "in" / "b.jsonl",
        json.dumps(dict(zip(COLUMNS.split(), NATIVE[3], strict=True))) + "\n"
        '{"event_id": "e5", "user_id": "u5", broken\n',
    )
    result = ingest_files(str(tmp_path / "in"), max_reject_share=0.5)
    assert result.events["event_id"].to_list() == ["e1", "e2", "e4"]
    assert result.stats["duplicates"] == 1
    reasons = result.rejects.select("source_file", "row_number", "reason").rows()
    assert [(f.rsplit("/", 1)[-1], n, r.split(":")[0]) for f, n, r in reasons] == [
        ("a.csv", 3, "missing_event_type"),
        ("b.jsonl", 2, "bad_json"),
    ]
    assert result.rejects["raw"][1].startswith('{"event_id": "e5"')


def test_ga4_raw_export_with_nested_event_params_and_items(tmp_path):
    value = pl.Struct(
        {"string_value": pl.String, "int_value": pl.Int64, "double_value": pl.Float64}
    )
    params_type = pl.List(pl.Struct({"key": pl.String, "value": value}))

    def params(location: str, title: str, revenue: float | None = None) -> list[dict]:
        rows = [
            {"key": "ga_session_id", "value": {"int_value": 42}},
            {"key": "page_location", "value": {"string_value": location}},
            {"key": "page_title", "value": {"string_value": title}},
        ]
        return rows + ([{"key": "value", "value": {"double_value": revenue}}] if revenue else [])

    item = {
        "item_id": "sku-9",
        "item_name": "Xphone 9",
        "item_brand": "Acme",
        "item_category": "Phones",
        "price": 99.5,
    }
    base = 1_767_607_200_000_000
    frame = pl.DataFrame(
        {
            "event_timestamp": [base, base + 60_000_000, base + 120_000_000],
            "event_name": ["page_view", "view_item", "purchase"],
            "user_pseudo_id": ["1.2"] * 3,
            "event_params": [
                params("https://s.example/", "Home"),
                params("https://s.example/p/sku-9", "Xphone 9"),
                params("https://s.example/checkout/done", "Thanks", 99.5),
            ],
            "items": [[], [item], [item]],
        },
        schema_overrides={"event_params": params_type},
    )
    frame.write_parquet(tmp_path / "in" / "events_20260105.parquet", mkdir=True)
    result = ingest_files(str(tmp_path / "in"), "ga4")
    _clean(result)
    ev = result.events
    assert ev["session_id"].unique().to_list() == ["1.2-42"]
    assert ev["page_id"].to_list() == ["/", "sku-9", "sku-9"]
    assert ev["revenue"].to_list() == [None, None, 99.5]
    phone = result.pages.filter(pl.col("page_id") == "sku-9").row(0, named=True)
    assert phone["title"] == "Xphone 9" and phone["category"] == "Phones"
    assert phone["price"] == 99.5 and phone["page_type"] == "product"


def test_parquet_with_zone_aware_nanosecond_timestamps_and_numeric_ids(tmp_path):
    frame = pl.DataFrame(
        {
            "user_id": [101, 102],
            "event_ts": pl.Series(
                [datetime(2026, 3, 29, 1, 30), datetime(2026, 3, 29, 3, 30)],
                dtype=pl.Datetime("ns"),
            ).dt.replace_time_zone("Europe/Berlin"),
            "event_type": ["page_view", "purchase"],
            "page_id": ["p1", "p2"],
            "revenue": [None, float("nan")],
        }
    )
    frame.write_parquet(tmp_path / "in" / "zoned.parquet", mkdir=True)
    result = ingest_files(str(tmp_path / "in"), max_reject_share=0.5)
    # 01:30 CET is 00:30 UTC; 03:30 CEST (after the switch at 02:00) is 01:30 UTC.
    assert result.events["event_ts"].to_list() == [datetime(2026, 3, 29, 0, 30)]
    assert result.events["user_id"].to_list() == ["101"]
    assert result.rejects["reason"].to_list() == ["bad_revenue: 'NaN'"]


def test_date_and_time_in_separate_columns(tmp_path):
    mapping = _write(
        tmp_path / "split.json",
        json.dumps(
            {
                "columns": {
                    "user_id": "visitor",
                    "event_ts": {"concat": ["day", "clock"], "sep": " "},
                    "event_type": "action",
                    "page_url": "path",
                },
                "time_zone": "Asia/Tokyo",
            }
        ),
    )
    _write(
        tmp_path / "in" / "log.tsv",
        "visitor\tday\tclock\taction\tpath\n"
        "v1\t2026-01-06\t09:00:00\tpage_view\t/help/shipping\n"
        "v1\t2026-01-06\t\tpage_view\t/help/shipping\n",
    )
    result = ingest_files(str(tmp_path / "in"), str(mapping), max_reject_share=0.5)
    assert result.events["event_ts"].to_list() == [datetime(2026, 1, 6, 0, 0)]
    assert result.rejects["reason"].to_list() == ["missing_timestamp"]
    assert result.pages["page_type"].to_list() == ["help"]


# --- malformed regions, spreadsheet damage, mapping arithmetic ---------------------------------

GOOD_ROWS = "".join(
    f"e{i},u{i % 5},s{i % 5},2026-01-05T10:{i:02d}:00Z,page_view,p{i % 3},mobile,organic,\n"
    for i in range(50)
)
GARBAGE_TAILS = {
    # An export cut off inside a quoted field, then what the crash left behind.
    "unterminated_quote": (
        'e98,u1,s1,"2026-01-05T11:00:00Z,page_view,p1\nzzz,yyy\n',
        [],
        [(51, "malformed_csv: line 52: unterminated quote"), (52, "missing_timestamp")],
    ),
    # A stray quote inside a value (kept as text), then binary bytes (a disk or transfer fault).
    "stray_quote_and_binary": (
        'e98,u1,s1,2026-01-05T11:00:00Z,page_view,p"1,,,\n'
        '\x00\x01\x02\xff garbage ,,,, "" " x\n\x00\x00\n',
        ["e98"],
        [
            (52, "malformed_csv: line 53: binary data"),
            (53, "malformed_csv: line 54: binary data"),
        ],
    ),
}


@pytest.mark.parametrize(
    ("tail", "loaded", "rejected"), GARBAGE_TAILS.values(), ids=GARBAGE_TAILS.keys()
)
def test_a_garbage_tail_becomes_rejects_with_file_and_line_and_the_rest_loads(
    tmp_path, tail, loaded, rejected
):
    header = COLUMNS.replace(" ", ",") + "\n"
    path = tmp_path / "in" / "cut.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes((header + GOOD_ROWS).encode() + tail.encode("latin-1"))
    result = ingest_files(str(tmp_path / "in"), max_reject_share=0.1)
    _clean(result)
    assert result.events["event_id"].to_list() == [f"e{i}" for i in range(50)] + loaded
    assert set(result.rejects["source_file"]) == {str(path)}
    # row_number counts data rows (line 52 is data row 51: the header is line 1).
    reasons = [
        (n, r.split(" (")[0]) for n, r in result.rejects.select("row_number", "reason").rows()
    ]
    assert reasons == rejected
    assert (
        result.rejects["raw"][0]
        == tail.encode("latin-1").decode("utf-8", "replace").split("\n")[len(loaded)]
    )
    assert result.stats["rows_read"] == 50 + len(loaded) + len(rejected)
    assert result.stats["rows_valid"] == 50 + len(loaded)
    # Above the allowed share the run fails naming the file and the row, not a parser error.
    first = rejected[0][0]
    with pytest.raises(IngestError, match=rf"cut\.csv row {first}"):
        ingest_files(str(tmp_path / "in"), max_reject_share=0.0)


def test_an_unterminated_quote_mid_file_rejects_one_line_and_keeps_the_rest(tmp_path):
    header = COLUMNS.replace(" ", ",") + "\n"
    bad = 'e97,u1,s1,2026-01-05T11:00:00Z,page_view,"p1,mobile,organic,\n'
    quoted = 'e96,u1,s1,2026-01-05T11:01:00Z,page_view,"p, with comma",mobile,organic,\n'
    lines = GOOD_ROWS.splitlines(keepends=True)
    _write(
        tmp_path / "in" / "mid.csv",
        header + "".join(lines[:10]) + bad + quoted + "".join(lines[10:]),
    )
    result = ingest_files(str(tmp_path / "in"), max_reject_share=0.1)
    assert result.events.height == 51
    assert "p, with comma" in result.events["page_id"].to_list()
    assert result.rejects.select("row_number", "reason").rows() == [
        (11, "malformed_csv: line 12: unterminated quote (the quoted field never closes)")
    ]
    assert result.rejects["raw"][0] == bad.rstrip("\n")  # the line as written


def test_numeric_ids_in_scientific_notation_are_rejected_with_the_spreadsheet_cause(tmp_path):
    _write(
        tmp_path / "in" / "saved_by_excel.csv",
        "event_id,user_id,session_id,event_ts,event_type,page_id\n"
        "1,2.81772E+18,s1,2026-01-05T10:00:00Z,page_view,p1\n"
        "2,281772000000000000,s1,2026-01-05T10:01:00Z,page_view,p1\n"
        "3,u3,4.5E+17,2026-01-05T10:02:00Z,page_view,p1\n"
        "4,u4,s4,2026-01-05T10:03:00Z,page_view,1.23457E+11\n"
        "5.1E+9,u5,s5,2026-01-05T10:04:00Z,page_view,p1\n"
        "6,u6,s6,2026-01-05T10:05:00Z,page_view,3E10\n",  # a product code, not a number
    )
    result = ingest_files(str(tmp_path / "in"), max_reject_share=1.0)
    assert result.events["event_id"].to_list() == ["2", "6"]
    reasons = dict(zip(result.rejects["row_number"], result.rejects["reason"], strict=True))
    assert set(reasons) == {1, 3, 4, 5}
    assert reasons[1] == (
        "id_in_scientific_notation: user_id '2.81772E+18': ids in scientific notation: the file "
        "was probably saved by a spreadsheet; export ids as text"
    )
    assert reasons[3].startswith("id_in_scientific_notation: session_id '4.5E+17'")
    assert reasons[4].startswith("id_in_scientific_notation: page_id '1.23457E+11'")
    assert reasons[5].startswith("id_in_scientific_notation: event_id '5.1E+9'")
    with pytest.raises(IngestError, match="spreadsheet.*export ids as text"):
        ingest_files(str(tmp_path / "in"))


def test_a_mapping_scales_revenue_and_adds_an_offset_column_to_a_base_time(tmp_path):
    mapping = _write(
        tmp_path / "offsets.toml",
        'name = "app"\n[columns]\nuser_id = "device"\nevent_type = "what"\npage_id = "screen"\n'
        'event_ts = { column = "session_start", offset = "seconds_in", offset_unit = "s" }\n'
        'revenue = { column = "revenue_micros", scale = 0.000001 }\n',
    )
    _write(
        tmp_path / "in" / "app.csv",
        "device,session_start,seconds_in,what,screen,revenue_micros\n"
        "d1,2026-01-05T10:00:00Z,0,page_view,home,\n"
        "d1,2026-01-05T10:00:00Z,90.5,add_to_cart,sku-1,\n"
        "d1,2026-01-05T10:00:00Z,600,purchase,cart,19990000\n"
        "d1,2026-01-05T10:00:00Z,soon,page_view,home,\n",
    )
    result = ingest_files(str(tmp_path / "in"), str(mapping), max_reject_share=0.5)
    _clean(result)
    assert result.events["event_ts"].to_list() == [
        datetime(2026, 1, 5, 10, 0),
        datetime(2026, 1, 5, 10, 1, 30, 500000),
        datetime(2026, 1, 5, 10, 10),
    ]
    assert result.events["revenue"].to_list() == [None, None, pytest.approx(19.99)]
    assert result.rejects["reason"].to_list() == ["bad_timestamp: offset 'soon' is not a number"]


def test_a_json_mapping_offsets_epoch_microseconds_and_scales_a_price(tmp_path):
    mapping = _write(
        tmp_path / "m.json",
        json.dumps(
            {
                "columns": {
                    "user_id": "uid",
                    "event_type": "kind",
                    "event_ts": {
                        "column": "batch_ts",
                        "offset": ["delta_ms", "delta"],
                        "offset_unit": "ms",
                    },
                    "page_id": "item",
                    "page_price": {"column": "price_cents", "scale": 0.01},
                },
                "timestamp_format": "epoch_us",
            }
        ),
    )
    pl.DataFrame(
        {
            "uid": ["a", "a"],
            "kind": ["page_view", "click"],
            "batch_ts": [1_767_607_200_000_000] * 2,  # 2026-01-05 10:00 UTC in microseconds
            "delta_ms": [250, 61_000],
            "item": ["x", "x"],
            "price_cents": [1999, 2001],
        }
    ).write_parquet(tmp_path / "in" / "batch.parquet", mkdir=True)
    result = ingest_files(str(tmp_path / "in"), str(mapping))
    assert result.events["event_ts"].to_list() == [
        datetime(2026, 1, 5, 10, 0, 0, 250000),
        datetime(2026, 1, 5, 10, 1, 1),
    ]
    assert result.pages["price"].to_list() == [pytest.approx(20.0)]


def test_ga4_prefers_revenue_in_usd(tmp_path):
    base = 1_767_607_200_000_000
    pl.DataFrame(
        {
            "event_timestamp": [base],
            "event_name": ["purchase"],
            "user_pseudo_id": ["1.2"],
            "ecommerce": [{"purchase_revenue": 90.0, "purchase_revenue_in_usd": 100.0}],
            "event_value_in_usd": [100.0],
        }
    ).write_parquet(tmp_path / "in" / "events.parquet", mkdir=True)
    result = ingest_files(str(tmp_path / "in"), "ga4")
    assert result.events["revenue"].to_list() == [100.0]
    assert result.stats["unknown_columns"] == 0


def test_the_sensor_day_lookup_adds_the_offset_too(tmp_path):
    from ubap_assets.core.ingest import file_days

    mapping = _write(
        tmp_path / "m.json",
        json.dumps(
            {
                "columns": {
                    "user_id": "u",
                    "event_type": "e",
                    "event_ts": {"column": "start", "offset": "secs"},
                }
            }
        ),
    )
    path = _write(
        tmp_path / "in" / "late.csv", "u,start,secs,e\nu1,2026-01-05T23:59:00Z,120,page_view\n"
    )
    assert file_days(str(path), str(mapping)) == [date(2026, 1, 6)]
