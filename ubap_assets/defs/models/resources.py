"""The model store, shared by the models and predictions groups."""

import dagster as dg

from ubap_assets.lib.model_store import ModelStore


@dg.definitions
def model_store_resources() -> dg.Definitions:
    # Root empty: <UBAP_DATA_DIR>/models, read when the store is used (not at import).
    return dg.Definitions(resources={"model_store": ModelStore(root="")})
