"""File ingestion: round trips, validation, dedup, windows, derived sessions/pages, the sensor."""

import json
import os
import shutil
import time
from datetime import date, datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from ubap_assets.core.ingest import (
    IngestError,
    MappingError,
    SourceSettingsError,
    ingest_files,
    parse_mapping,
    source_settings,
)
from ubap_assets.core.schema import (
    EVENT_REJECTS_SCHEMA,
    EVENTS_SCHEMA,
    PAGE_TYPES,
    PAGES_SCHEMA,
    USERS_SCHEMA,
)

HEADER = "event_id,user_id,session_id,event_ts,event_type,page_id,device,traffic_source,revenue\n"


def _write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _accounted(stats: dict[str, int]) -> bool:
    """Nothing is silently dropped: every row read is loaded, rejected, ignored or a duplicate."""
    return stats["rows_read"] == (
        stats["rows_valid"] + stats["rows_rejected"] + stats["rows_ignored"] + stats["duplicates"]
    )


def test_native_round_trip_parquet_and_csv(tiny_world, tmp_path):
    events = tiny_world.events
    # Two Parquet files and one CSV file with the same rows: all three collapse into one copy.
    half = events.height // 2
    events.head(half).write_parquet(tmp_path / "in" / "a.parquet", mkdir=True)
    events.tail(events.height - half).write_parquet(tmp_path / "in" / "b.parquet")
    events.write_csv(tmp_path / "in" / "again.csv")
    tiny_world.pages.write_csv(tmp_path / "in" / "pages.csv")  # next to the events: not events

    result = ingest_files(str(tmp_path / "in"), pages_file=str(tmp_path / "in" / "pages.csv"))

    assert result.events.schema == pl.Schema(EVENTS_SCHEMA)
    assert result.events.equals(events.sort("event_ts", "event_id"))
    assert result.pages.equals(tiny_world.pages.sort("page_id"))
    assert result.users.schema == pl.Schema(USERS_SCHEMA)
    assert set(result.users["user_id"]) == set(events["user_id"])
    assert result.rejects.schema == pl.Schema(EVENT_REJECTS_SCHEMA)
    assert result.rejects.height == 0
    assert result.stats["duplicates"] == events.height
    assert result.stats["sessions_derived"] == 0
    assert len(result.files) == 3 and _accounted(result.stats)


def test_every_bad_row_is_rejected_with_its_reason(tmp_path):
    _write(
        tmp_path / "in" / "events.csv",
        HEADER
        + "e1,u1,s1,2026-01-05T10:00:00Z,page_view,p1,mobile,organic,\n"
        + "e2,u1,s1,2026-01-05T10:01:00Z,purchase,p1,mobile,organic,49.90\n"
        + "e3,u2,s2,2026-13-45 99:00,click,p2,desktop,direct,\n"  # bad timestamp
        + "e4,,s2,2026-01-05T10:00:00Z,click,p2,desktop,direct,\n"  # missing user
        + "e5,u2,s2,2026-01-05T10:02:00Z,wishlist,p2,desktop,direct,\n"  # unknown type
        + "e6,u2,s2,2026-01-05T10:03:00Z,purchase,p2,desktop,direct,lots\n"  # bad revenue
        + "e7,u2,s2,,click,p2,desktop,direct,\n"  # missing timestamp
        + "e2,u1,s1,2026-01-05T11:00:00Z,purchase,p1,mobile,organic,5.00\n"  # id reused
        + "e8,NULL,s8,2026-01-05T10:00:00Z,click,p2,desktop,direct,\n",  # a null token
    )
    result = ingest_files(str(tmp_path / "in"), max_reject_share=1.0)

    assert result.events["event_id"].to_list() == ["e1", "e2"]
    assert result.events["revenue"].to_list() == [None, 49.9]
    reasons = dict(zip(result.rejects["row_number"], result.rejects["reason"], strict=True))
    assert reasons[3].startswith("bad_timestamp: '2026-13-45 99:00'")
    assert reasons[4] == "missing_user"
    assert reasons[5] == "unknown_event_type: 'wishlist'"
    assert reasons[6] == "bad_revenue: 'lots'"
    assert reasons[7] == "missing_timestamp"
    assert reasons[8].startswith("duplicate_event_id: 'e2'")
    assert reasons[9] == "missing_user"
    raw = json.loads(result.rejects.filter(pl.col("row_number") == 5)["raw"].item())
    assert raw["event_type"] == "wishlist" and raw["user_id"] == "u2"
    assert result.stats["rejected:bad_timestamp"] == 1
    assert result.stats["rows_rejected"] == 7 and _accounted(result.stats)
    assert result.rejects["ingested_at"].null_count() == 0


def test_too_many_rejects_fail_with_a_clear_message(tmp_path):
    good = "".join(
        f"e{i},u1,s1,2026-01-05T10:{i:02d}:00Z,page_view,p1,mobile,organic,\n" for i in range(18)
    )
    bad = "x1,u1,s1,yesterday,page_view,p1,mobile,organic,\nx2,u1,s1,2026-01-05,teleport,p1,,,\n"
    _write(tmp_path / "in" / "events.csv", HEADER + good + bad)

    with pytest.raises(IngestError) as caught:
        ingest_files(str(tmp_path / "in"))
    message = str(caught.value)
    assert "2 of 20 rows (10.0%)" in message and "5.0%" in message
    assert "bad_timestamp" in message and "unknown_event_type" in message and "Fix:" in message
    assert caught.value.result.rejects.height == 2  # the rejects can still be published
    assert ingest_files(str(tmp_path / "in"), max_reject_share=0.1).events.height == 18


def test_same_file_twice_changes_nothing(tmp_path):
    rows = "".join(
        f"u{i % 3},2026-01-0{5 + i % 3}T1{i % 10}:00:00+01:00,page_view,/p/{i % 4}\n"
        for i in range(30)
    )
    _write(tmp_path / "one" / "a.csv", "user_id,event_ts,event_type,url\n" + rows)
    first = ingest_files(str(tmp_path / "one"))
    shutil.copy(tmp_path / "one" / "a.csv", tmp_path / "one" / "a_copy.csv")
    second = ingest_files(str(tmp_path / "one"))

    assert second.events.equals(first.events)
    assert second.pages.equals(first.pages) and second.users.equals(first.users)
    assert second.stats["duplicates"] == first.stats["rows_read"] + first.stats["duplicates"]
    assert first.events["event_id"].n_unique() == first.events.height  # content-hash ids


def test_windows_slice_the_events_and_nothing_else(tiny_world, tmp_path):
    tiny_world.events.write_parquet(tmp_path / "in" / "events.parquet", mkdir=True)
    full = ingest_files(str(tmp_path / "in"))
    day = datetime(2026, 1, 12)
    parts = [
        ingest_files(
            str(tmp_path / "in"), start=day + timedelta(days=i), end=day + timedelta(i + 1)
        )
        for i in range(3)
    ]
    for i, part in enumerate(parts):
        assert part.events["event_ts"].dt.date().unique().to_list() == [date(2026, 1, 12 + i)]
        assert part.rejects.height == 0 and part.users.equals(full.users)
        assert part.stats["rows_outside_window"] == full.stats["rows_valid"] - part.events.height
    three = full.events.filter(pl.col("event_ts").is_between(day, day + timedelta(3), "left"))
    assert pl.concat([p.events for p in parts]).equals(three)


def test_events_in_the_same_second_on_different_pages_are_not_duplicates(tmp_path):
    # No event ids and no page ids: the page comes from the URL, so two events in the same
    # second differ only in what is derived from them. Exact copies still collapse.
    rows = (
        "u1,2026-01-05T10:00:00Z,page_view,https://shop.example/p/1\n"
        "u1,2026-01-05T10:00:00Z,page_view,https://shop.example/p/2\n"
        "u1,2026-01-05T10:00:00Z,page_view,https://shop.example/p/2?ref=mail\n"
        "u1,2026-01-05T10:00:00Z,page_view,https://shop.example/p/2\n"
        "u2,2026-01-05T10:00:00Z,click,,Spring sale\n"
        "u2,2026-01-05T10:00:00Z,click,,Winter sale\n"
    )
    _write(tmp_path / "in" / "a.csv", "user_id,event_ts,event_type,url,title\n" + rows)
    result = ingest_files(str(tmp_path / "in"))
    assert sorted(result.events["page_id"].to_list()) == [
        "/p/1",
        "/p/2",
        "/p/2",
        "/spring-sale",
        "/winter-sale",
    ]
    assert result.stats["duplicates"] == 1 and _accounted(result.stats)
    assert result.events["event_id"].n_unique() == result.events.height


def test_sessions_split_after_thirty_minutes_of_inactivity(tmp_path):
    times = ["10:00", "10:29", "10:58", "11:29", "11:30", "12:01"]
    rows = "".join(f"u1,2026-01-05 {t}:00,page_view,p1\n" for t in times)
    rows += "u2,2026-01-05 10:10:00,page_view,p1\n"
    _write(tmp_path / "in" / "a.csv", "user_id,event_ts,event_type,page_id\n" + rows)
    result = ingest_files(str(tmp_path / "in"))
    u1 = result.events.filter(pl.col("user_id") == "u1")["session_id"].to_list()
    # 10:00-10:58 one session; 11:29 opens a new one (31 min); 12:01 another (31 min).
    assert u1 == ["u1-20260105T100000"] * 3 + ["u1-20260105T112900"] * 2 + ["u1-20260105T120100"]
    assert result.stats["sessions_derived"] == 4
    late = ingest_files(str(tmp_path / "in"), start=datetime(2026, 1, 5, 11))
    assert late.events["session_id"].to_list()[:2] == ["u1-20260105T112900"] * 2


def test_pages_and_users_are_derived_from_urls_titles_and_categories(tmp_path):
    _write(
        tmp_path / "in" / "a.csv",
        "user_id,event_ts,event_type,url,title,category,price,country,signup_date\n"
        "u1,2026-01-05T10:00:00Z,page_view,https://shop.example/?utm=x,,,,DE,2025-12-01\n"
        "u1,2026-01-05T10:01:00Z,page_view,https://shop.example/c/audio/quiet-700-anc,"
        "Quiet 700 ANC,Audio > Headphones,299.0,DE,2025-12-01\n"
        "u1,2026-01-05T10:02:00Z,search,https://shop.example/search?q=ssd,,,,DE,\n"
        "u2,2026-01-06T09:00:00Z,page_view,https://shop.example/blog/noise-cancelling-explained,"
        ",,,,\n"
        "u2,2026-01-06T09:01:00Z,click,https://shop.example/help/returns/,,,,,\n",
    )
    result = ingest_files(str(tmp_path / "in"))
    pages = {row["page_id"]: row for row in result.pages.iter_rows(named=True)}

    assert set(pages) == {
        "/",
        "/c/audio/quiet-700-anc",
        "/search",
        "/blog/noise-cancelling-explained",
        "/help/returns",
    }
    assert pages["/"]["page_type"] == "home"
    assert pages["/search"]["page_type"] == "search"
    headphones = pages["/c/audio/quiet-700-anc"]
    assert headphones["title"] == "Quiet 700 ANC" and headphones["category"] == "Audio"
    assert headphones["price"] == 299.0 and headphones["page_type"] == "product"
    assert "Headphones" in headphones["description"]
    assert pages["/blog/noise-cancelling-explained"]["title"] == "Noise Cancelling Explained"
    assert pages["/blog/noise-cancelling-explained"]["page_type"] == "blog"
    assert pages["/help/returns"]["page_type"] == "help"
    assert result.pages.schema == pl.Schema(PAGES_SCHEMA)
    assert set(result.pages["page_type"]) <= set(PAGE_TYPES)
    text = result.pages.select("url", "title", "description", "category", "page_type")
    assert text.null_count().sum_horizontal().item() == 0

    users = {row["user_id"]: row for row in result.users.iter_rows(named=True)}
    assert users["u1"]["signup_date"] == date(2025, 12, 1) and users["u1"]["country"] == "DE"
    assert users["u2"]["signup_date"] == date(2026, 1, 6) and users["u2"]["country"] == "unknown"


def test_source_settings_read_and_validate_the_environment(tmp_path):
    assert source_settings({}).kind == "synthetic"
    inbox = source_settings({"UBAP_SOURCE": "inbox", "UBAP_SOURCE_MAPPING": "segment"})
    assert inbox.is_files and inbox.path.endswith("inbox") and inbox.mapping == "segment"
    folder = source_settings({"UBAP_SOURCE": str(tmp_path), "UBAP_MAX_REJECT_SHARE": "0.2"})
    assert folder.path == str(tmp_path) and folder.max_reject_share == 0.2

    with pytest.raises(SourceSettingsError, match="UBAP_SOURCE_MAPPING='shopify'.*segment"):
        source_settings({"UBAP_SOURCE": str(tmp_path), "UBAP_SOURCE_MAPPING": "shopify"})
    with pytest.raises(SourceSettingsError, match="UBAP_MAX_REJECT_SHARE"):
        source_settings({"UBAP_MAX_REJECT_SHARE": "5%"})
    bad = _write(tmp_path / "bad.json", json.dumps({"columns": {"user": "uid"}}))
    with pytest.raises(SourceSettingsError, match="unknown target fields \\['user'\\]"):
        source_settings({"UBAP_SOURCE_MAPPING": str(bad)})


def test_mapping_content_is_validated():
    base = {"columns": {"user_id": "u", "event_ts": "t", "event_type": "e"}}
    assert parse_mapping(base).fields["user_id"].candidates == ("u",)
    with pytest.raises(MappingError, match="not an event type"):
        parse_mapping({**base, "event_types": {"view": "look"}})
    with pytest.raises(MappingError, match="required fields \\['event_type'\\]"):
        parse_mapping({"columns": {"user_id": "u", "event_ts": "t"}})
    with pytest.raises(MappingError, match="IANA zone"):
        parse_mapping({**base, "time_zone": "Mars/Olympus"})
    with pytest.raises(IngestError, match="neither a built-in mapping"):
        ingest_files(".", "shopify")


def test_mapping_errors_name_the_field_and_the_fix():
    base = {"user_id": "u", "event_ts": "t", "event_type": "e"}
    spec = parse_mapping({"columns": {**base, "revenue": {"column": "r", "scale": 1e-6}}})
    assert spec.fields["revenue"].candidates == ("r",) and spec.fields["revenue"].scale == 1e-6
    with pytest.raises(MappingError, match=r"columns\.revenue\.scale.*number"):
        parse_mapping({"columns": {**base, "revenue": {"column": "r", "scale": "micros"}}})
    with pytest.raises(MappingError, match=r"columns\.revenue.*offset.*only.*event_ts"):
        parse_mapping({"columns": {**base, "revenue": {"column": "r", "offset": "x"}}})
    with pytest.raises(MappingError, match=r"offset_unit.*'s', 'ms', 'us' or 'ns'"):
        ts = {"column": "t", "offset": "o", "offset_unit": "hours"}
        parse_mapping({"columns": {**base, "event_ts": ts}})
    with pytest.raises(MappingError, match=r"columns\.user_id\.colum.*unknown key.*column"):
        parse_mapping({"columns": {**base, "user_id": {"colum": "u"}}})
    with pytest.raises(MappingError, match=r"session_gap_minutes.*positive"):
        parse_mapping({"columns": base, "session_gap_minutes": 0})


# --- the inbox sensor ---------------------------------------------------------------------------


def _age(path, seconds: int = 60):
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_inbox_sensor_requests_the_days_new_files_touch(tmp_path, monkeypatch):
    from ubap_assets.defs.ingest.sensors import RANGE_END_TAG, RANGE_START_TAG, inbox_sensor

    inbox = tmp_path / "inbox"
    monkeypatch.setenv("UBAP_SOURCE", str(inbox))
    a = _write(
        inbox / "a.csv",
        "user_id,event_ts,event_type,page_id\n"
        "u1,2026-01-06T10:00:00Z,page_view,p1\nu1,2026-01-08T23:30:00-02:00,click,p1\n"
        "u1,2026-01-07T10:00:00Z,click,p1\nu2,1999-01-01T00:00:00Z,click,p1\n",
    )
    _age(a)
    first = inbox_sensor(dg.build_sensor_context(cursor=None))
    assert isinstance(first, dg.SensorResult)
    # 6, 7 and 9 Jan (23:30 at -02:00 is the 9th in UTC); 1999 lies before the partitions.
    # One run from the first to the last day: each run refreshes everything downstream. It
    # takes in the day before and after (their sessions may cross midnight into a changed day).
    (days_5_to_10,) = first.run_requests
    assert days_5_to_10.tags[RANGE_START_TAG] == "2026-01-05"
    assert days_5_to_10.tags[RANGE_END_TAG] == "2026-01-10"

    again = inbox_sensor(dg.build_sensor_context(cursor=first.cursor))
    assert isinstance(again, dg.SkipReason)

    b = _write(inbox / "b.csv", "user_id,event_ts,event_type,page_id\nu3,2026-01-20,click,p1\n")
    _age(b)
    second = inbox_sensor(dg.build_sensor_context(cursor=first.cursor))
    assert [_days(r) for r in second.run_requests] == [("2026-01-19", "2026-01-21")]

    b.unlink()
    removed = inbox_sensor(dg.build_sensor_context(cursor=second.cursor))
    assert [_days(r) for r in removed.run_requests] == [("2026-01-19", "2026-01-21")]


def _days(request) -> tuple[str, str]:
    from ubap_assets.defs.ingest.sensors import RANGE_END_TAG, RANGE_START_TAG

    return request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]


def _inbox_with_one_file(tmp_path, monkeypatch):
    """UBAP_SOURCE = an inbox holding one settled file of a day (2026-01-06)."""
    inbox = tmp_path / "inbox"
    monkeypatch.setenv("UBAP_SOURCE", str(inbox))
    _age(_write(inbox / "a.csv", "user_id,event_ts,event_type,page_id\nu1,2026-01-06,click,p1\n"))
    return inbox


def _a_later_file_triggers_its_run(inbox, cursor, instance):
    from ubap_assets.defs.ingest.sensors import inbox_sensor

    _age(_write(inbox / "b.csv", "user_id,event_ts,event_type,page_id\nu3,2026-01-20,click,p1\n"))
    later = inbox_sensor(dg.build_sensor_context(cursor=cursor, instance=instance))
    assert [_days(r) for r in later.run_requests] == [("2026-01-19", "2026-01-21")]


def test_inbox_sensor_first_tick_does_not_repeat_the_full_refresh(tmp_path, monkeypatch):
    """`make up` queues the whole history; the sensor's first tick only records the files, and
    a file added later still triggers its run."""
    from ubap_assets.defs.ingest.sensors import inbox_sensor

    inbox = _inbox_with_one_file(tmp_path, monkeypatch)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_run(
        dg.DagsterRun(job_name="refresh_job", run_id="a" * 36, status=dg.DagsterRunStatus.STARTED)
    )
    first = inbox_sensor(dg.build_sensor_context(cursor=None, instance=instance))
    assert isinstance(first, dg.SensorResult) and not first.run_requests
    assert "ingesting the whole history" in first.skip_reason.skip_message

    _a_later_file_triggers_its_run(inbox, first.cursor, instance)


def test_inbox_sensor_waits_for_files_still_being_written(tmp_path, monkeypatch):
    from ubap_assets.defs.ingest.sensors import inbox_sensor

    monkeypatch.setenv("UBAP_SOURCE", str(tmp_path))
    _write(tmp_path / "fresh.csv", "user_id,event_ts,event_type,page_id\nu1,2026-01-06,click,p\n")
    assert isinstance(inbox_sensor(dg.build_sensor_context(cursor=None)), dg.SkipReason)


def test_sensor_is_off_for_the_synthetic_source_and_targets_the_refresh_job():
    from ubap_assets.defs.ingest.sensors import _default_status, inbox_sensor, ingest_refresh_job

    assert _default_status() == dg.DefaultSensorStatus.STOPPED  # conftest: UBAP_SOURCE=synthetic
    assert inbox_sensor.job_name == ingest_refresh_job.name == "ingest_refresh_job"


def test_sensor_is_on_when_the_source_is_files(monkeypatch):
    from ubap_assets.defs.ingest.sensors import _default_status

    monkeypatch.setenv("UBAP_SOURCE", "inbox")
    assert _default_status() == dg.DefaultSensorStatus.RUNNING
    monkeypatch.setenv("UBAP_SOURCE_MAPPING", "shopify")  # invalid: stays off, errors when run
    assert _default_status() == dg.DefaultSensorStatus.STOPPED


def test_inbox_sensor_first_tick_before_make_ups_run_is_queued(tmp_path, monkeypatch):
    """`make up` starts dagster dev and queues the whole history once the webserver answers; the
    daemon's first tick can come first, when no run and no events exist yet. The flag that
    `make up` gives its dagster dev keeps that tick from queueing every file a second time."""
    from ubap_assets.defs.ingest.sensors import FULL_REFRESH_PENDING_ENV, inbox_sensor

    inbox = _inbox_with_one_file(tmp_path, monkeypatch)
    instance = dg.DagsterInstance.ephemeral()  # no run, no events yet
    unflagged = inbox_sensor(dg.build_sensor_context(cursor=None, instance=instance))
    assert [_days(r) for r in unflagged.run_requests] == [("2026-01-05", "2026-01-07")]

    monkeypatch.setenv(FULL_REFRESH_PENDING_ENV, "1")
    first = inbox_sensor(dg.build_sensor_context(cursor=None, instance=instance))
    assert isinstance(first, dg.SensorResult) and not first.run_requests
    assert "queues the whole history" in first.skip_reason.skip_message
    _a_later_file_triggers_its_run(inbox, first.cursor, instance)
