"""Every resource of the code location, bound in one place."""

import dagster as dg

from ubap_assets.lib.warehouse_io import DuckDBWarehouseIOManager, WarehouseResource
from ubap_assets.warehouse.paths import warehouse_path


@dg.definitions
def resources() -> dg.Definitions:
    database = str(warehouse_path())
    warehouse_path().parent.mkdir(parents=True, exist_ok=True)
    return dg.Definitions(
        resources={
            # Assets that return polars frames are stored as main.<asset name>.
            "io_manager": DuckDBWarehouseIOManager(database=database),
            # Assets that compute in SQL (over the big events table) use this connection; it
            # connects exactly like the IO manager and always closes (see WarehouseResource).
            "warehouse": WarehouseResource(database=database),
        }
    )
