"""The served model's pages x pages side, fitted once a week and kept on disk.

Dagster-free. A night's served model scores every user's history up to the data end, but the
item graph it multiplies that history by (content and item similarities, X'X, EASE weights) is
fitted on the interactions before the running state's weekly cut (``interaction_state``),
decayed to the cut. EASE inverts a pages x pages matrix: 46.8 s on two cores for MovieLens's
9,742 movies, which every night would otherwise repeat on a week of the same data. The graph is
kept in a file named by a key of everything it is made of (the state's knobs, its cut and a
fingerprint of its sums, the catalogue and its embeddings, the graph's knobs), so a full run
and a sequence of nights reach the same key and the same bits, and anything that changes the
graph misses it.
"""

import hashlib
import json
import os
import uuid
from pathlib import Path

import duckdb
import numpy as np

from ubap_assets.core.recommend import interaction_state as state
from ubap_assets.core.recommend.params import RecommenderParams
from ubap_assets.core.recommend.scorers import ItemGraph, fit_item_graph
from ubap_assets.core.recommend.texts import Catalogue

GRAPH_VERSION = 1
SUFFIX = ".npz"


def graph_key(stored: dict, catalogue: Catalogue, params: RecommenderParams) -> str:
    """A name for the graph of the state ``stored`` (``interaction_state.stored_state``)."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(
        json.dumps(
            {
                "version": GRAPH_VERSION,
                "state": [stored["signature"], str(stored["cut"]), stored["fingerprint"]],
                "strength": params.strength,
                "ease_lambda": params.ease_lambda,
                "item_neighbours": params.item_neighbours,
                "content_neighbours": params.content_neighbours,
                "pages": catalogue.page_ids.tolist(),
                "embeddings": [str(catalogue.embeddings.dtype), catalogue.embeddings.shape],
            },
            sort_keys=True,
        ).encode()
    )
    digest.update(np.ascontiguousarray(catalogue.embeddings).tobytes())
    return digest.hexdigest()


def _load(path: Path) -> ItemGraph | None:
    try:
        with np.load(path) as stored:
            return ItemGraph(**{name: stored[name] for name in ItemGraph.ARRAYS})
    except (OSError, ValueError, KeyError):  # torn or foreign: fitted again and replaced
        return None


def _store(path: Path, graph: ItemGraph) -> None:
    """Write ``graph`` beside the others, then rename it in and drop the older ones."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    aside = directory / f".{uuid.uuid4().hex}.tmp"
    with aside.open("wb") as sink:
        np.savez(sink, **{name: getattr(graph, name) for name in ItemGraph.ARRAYS})
    os.replace(aside, path)
    for other in directory.glob(f"*{SUFFIX}"):
        if other != path:
            other.unlink(missing_ok=True)


def served_item_graph(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    params: RecommenderParams,
    directory: Path | None,
) -> tuple[ItemGraph | None, str]:
    """The served model's item graph and a note; None (fit it on the served interactions) for
    a windowed read (``history_days``) or before the state holds a day. Call after the state
    was brought to the run's cut (``interaction_state.training_from_state``). ``directory``:
    where graphs are kept (None: fitted every time)."""
    if params.history_days is not None:
        return None, "item graph: fitted on the served window (no running state)"
    stored = state.stored_state(con)
    if stored is None:
        return None, "item graph: fitted on the served interactions (no running state)"
    key = graph_key(stored, catalogue, params)
    path = None if directory is None else directory / f"{key}{SUFFIX}"
    graph = _load(path) if path is not None and path.exists() else None
    if graph is not None:
        return graph, f"item graph: of the cut {stored['cut']}, kept since the week's first run"
    train = state.training_at_cut(con, params, catalogue, stored)
    if train is None:
        return None, "item graph: fitted on the served interactions (no day before the cut yet)"
    graph = fit_item_graph(catalogue, train, params)
    if path is not None:
        _store(path, graph)
    return graph, (
        f"item graph: fitted on {train.n_users:,} users' interactions before the cut "
        f"{stored['cut']}"
    )
