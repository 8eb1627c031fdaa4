"""One partition per day of events, from the start of the history to yesterday."""

import dagster as dg

from ubap_assets.defs.events.settings import history_start

daily_partitions = dg.DailyPartitionsDefinition(start_date=history_start().isoformat())
