"""The dashboard's data access, one module per page area: cached reads of the serving snapshot.

Every helper takes the ``Snapshot`` the page resolved at the start of its run, so one page
render never mixes two snapshots and the cache (keyed by the snapshot's id and file) can never
be stale: a refresh publishes a new snapshot id and the next rerun reads that. The SQL lives in
the reader's queries (``ubap_assets.warehouse.queries``); these modules only cache, pick
columns and shape frames for the charts. The dashboard never opens the warehouse the pipeline
writes, and holds no connection of its own between reruns.
"""
