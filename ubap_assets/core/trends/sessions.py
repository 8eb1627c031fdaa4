"""The ``sessions`` table is built in ``ubap_assets.core.daily`` (day-partitioned with the other
daily intermediates); this name stays for the callers that import it from the trends."""

from ubap_assets.core.daily import build_sessions

__all__ = ["build_sessions"]
