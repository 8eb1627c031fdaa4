"""The pinned world: the first day of the history is fixed once and never slides.

- ``UBAP_START_DATE`` set: that is the first day. Nothing is recorded; the environment is the
  world (change the seed or the users and you have a new one: ``make clean``).
- The synthetic source: the first time the code location loads or a run starts, the first day
  (today - ``UBAP_HISTORY_DAYS``), the seed, the users and the history length are recorded in
  ``$UBAP_DATA_DIR/world.json`` (written atomically, never rewritten) and read ever after. The
  history has an open end: it grows a day each night. A ``UBAP_SEED``, ``UBAP_USERS`` or
  ``UBAP_HISTORY_DAYS`` (or run config) that differs from the recorded world is an error, since
  it would contradict the stored events: set it back, or start a new world with ``make clean``.
- A file source: the data's own days. The first and last day are read from the files'
  timestamps once per file and cached in ``world.json`` under the files' names, sizes and
  mtimes, so loading the code location stays fast. The first day is kept even when old files
  leave the inbox. A log that ended more than ``LIVE_DAYS`` ago ends the partitions at its last
  day; a live one (data up to the last week) keeps an open end so the inbox sensor can add days.
"""

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from ubap_assets.defs.events import settings
from ubap_assets.settings import SYNTHETIC, Settings, load_settings
from ubap_assets.warehouse.paths import data_dir

WORLD_FILE = "world.json"
LIVE_DAYS = 7
NEW_WORLD = "or start a new world with `make clean` (it empties the data directory)"


@dataclass(frozen=True)
class World:
    source: str  # "synthetic" or the files' folder/glob
    first_day: date
    last_day: date | None  # None: an open end, one more day each night
    users: int
    seed: int
    days: int  # the synthetic world's first history length (it shapes the population)
    pinned_by: str  # UBAP_START_DATE, world.json, files, or "today (not recorded)"


class Resolved(NamedTuple):
    world: World
    problems: tuple[str, ...]  # one line each, naming the variable and the fix


def world_file() -> Path:
    return data_dir() / WORLD_FILE


@contextmanager
def _locked() -> Iterator[None]:
    """One process at a time reads-then-writes world.json (a lock on its folder)."""
    folder = world_file().parent
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_record() -> dict[str, Any]:
    """world.json as a dict ({} when absent); ValueError naming the file when unreadable."""
    path = world_file()
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{path} is unreadable ({err}): restore it, or delete it to record a new world "
            f"({NEW_WORLD})"
        ) from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} does not hold a JSON object: delete it, {NEW_WORLD}")
    return record


def _write_record(record: dict[str, Any]) -> None:
    """Replace world.json atomically (a temporary file in the same folder, then a rename)."""
    path = world_file()
    fd, tmp = tempfile.mkstemp(prefix=".world-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def resolve(
    env: Settings,
    *,
    users: int | None = None,
    seed: int | None = None,
    days: int | None = None,
    record: bool = True,
) -> Resolved:
    """The world of the environment (or of a run config's users/seed/days), recording it the
    first time when ``record``. Never raises: problems come back as one-line messages."""
    users = env.users if users is None else users
    seed = env.seed if seed is None else seed
    days = env.history_days if days is None else days
    if env.is_synthetic:
        return _synthetic(env, users, seed, days, record)
    return _files(env, users, seed, days, record)


def current_world(record: bool = True) -> Resolved:
    """The world of the environment as it is now, with the environment's problems first."""
    loaded = load_settings()
    resolved = resolve(loaded.settings, record=record and not loaded.problems)
    return Resolved(resolved.world, loaded.problems + resolved.problems)


def _synthetic(env: Settings, users: int, seed: int, days: int, record: bool) -> Resolved:
    if env.start_date is not None:
        world = World(SYNTHETIC, env.start_date, None, users, seed, days, "UBAP_START_DATE")
        return Resolved(world, ())
    unrecorded = World(
        SYNTHETIC, settings.today() - timedelta(days=days), None, users, seed, days, "today"
    )
    try:
        if record:
            with _locked():
                doc = read_record()
                if SYNTHETIC not in doc:
                    doc[SYNTHETIC] = {
                        "start_date": unrecorded.first_day.isoformat(),
                        "users": users,
                        "seed": seed,
                        "days": days,
                    }
                    _write_record(doc)
        else:
            doc = read_record()
    except (OSError, ValueError) as err:
        return Resolved(unrecorded, (f"the synthetic world is not pinned: {err}",))
    rec = doc.get(SYNTHETIC)
    if rec is None:
        return Resolved(unrecorded, ())
    world = World(
        SYNTHETIC,
        date.fromisoformat(rec["start_date"]),
        None,
        int(rec["users"]),
        int(rec["seed"]),
        int(rec["days"]),
        WORLD_FILE,
    )
    problems = tuple(
        f"{var}={wanted} (or the run config's {key}) differs from the recorded world "
        f"({key}={recorded}, first day {world.first_day}, in {world_file()}): unset it or set it "
        f"back to {recorded}, {NEW_WORLD}"
        for key, var, wanted, recorded in (
            ("users", "UBAP_USERS", users, world.users),
            ("seed", "UBAP_SEED", seed, world.seed),
            ("days", "UBAP_HISTORY_DAYS", days, world.days),
        )
        if wanted != recorded
    )
    return Resolved(world, problems)


def _files(env: Settings, users: int, seed: int, days: int, record: bool) -> Resolved:
    from ubap_assets.core.ingest import SourceSettingsError, source_settings

    fallback_first = env.start_date or settings.today() - timedelta(days=days)
    fallback = World(env.source, fallback_first, None, users, seed, days, "today")
    try:
        source = source_settings()
        data_first, data_last = file_day_range(source.path or env.source, source.mapping, record)
    except SourceSettingsError as err:
        return Resolved(fallback, (str(err),))
    except (OSError, ValueError) as err:
        return Resolved(fallback, (f"the days of the event files are unknown: {err}",))
    if data_first is None:  # no files yet: an open world from the start date
        return Resolved(fallback, ())
    first = env.start_date or data_first
    last = data_last if data_last < settings.today() - timedelta(days=LIVE_DAYS) else None
    problems: tuple[str, ...] = ()
    if last is not None and first > last:
        problems = (
            f"UBAP_START_DATE={first} is after the last day of the event files ({last}): "
            "unset it or set it to a day the files cover",
        )
        last = None
    pinned = "UBAP_START_DATE" if env.start_date else "files"
    return Resolved(World(env.source, first, last, users, seed, days, pinned), problems)


def file_day_range(source: str, mapping: str | None, record: bool) -> tuple[date | None, date]:
    """The first and last UTC day of the event files (first is None when there are none).

    Each file's days are read once (timestamps only) and cached in world.json under its path,
    size and mtime; the first day ever seen is kept when old files are removed.
    """
    from ubap_assets.core.ingest import IngestError, file_days, inbox_state

    with _locked():
        doc = read_record()
        cache = doc.get("files") or {}
        if cache.get("source") != source or cache.get("mapping") != mapping:
            cache = {"source": source, "mapping": mapping, "files": {}}
        known = cache.get("files", {})
        entries: dict[str, list[str]] = {}
        for path, fingerprint in inbox_state(source).items():
            hit = known.get(path)
            if hit and hit[0] == fingerprint:
                entries[path] = hit
                continue
            try:
                found = file_days(path, mapping)
            except (IngestError, ValueError, OSError) as err:
                # The ingestion run reports it with the file's rows; here it has no days.
                found = []
                cache.setdefault("unreadable", {})[path] = str(err)[:200]
            span = [found[0].isoformat(), found[-1].isoformat()] if found else ["", ""]
            entries[path] = [fingerprint, *span]
        firsts = [e[1] for e in entries.values() if e[1]]
        lasts = [e[2] for e in entries.values() if e[2]]
        first = min([*firsts, *([cache["first_day"]] if cache.get("first_day") else [])] or [""])
        updated = {**cache, "files": entries, "first_day": first}
        if record and updated != doc.get("files"):
            _write_record({**doc, "files": updated})
    if not first:
        return None, settings.today()
    last = max(lasts) if lasts else first
    return date.fromisoformat(first), date.fromisoformat(last)
