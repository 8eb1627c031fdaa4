"""Where fitted models live: one folder per run version, with a JSON model card per model.

Layout under the root (by default ``<data dir>/models``)::

    <version>/<task>__<model>.joblib   the fitted estimator and its Design
    <version>/<task>__<model>.json     its model card (features, cutoffs, metrics)
"""

import json
import re
import shutil
from pathlib import Path

import dagster as dg
import joblib

from ubap_assets.warehouse.paths import data_dir

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _check(*parts: str) -> None:
    for part in parts:
        if not _SAFE.match(part):
            raise ValueError(f"unsafe name for the model store: {part!r}")


class ModelStore(dg.ConfigurableResource):
    """Local-disk model store; ``root`` empty means ``<UBAP_DATA_DIR>/models``."""

    root: str = ""

    def root_path(self) -> Path:
        return Path(self.root) if self.root else data_dir() / "models"

    def path(self, version: str, task: str, model: str, suffix: str = ".joblib") -> Path:
        _check(version, task, model)
        return self.root_path() / version / f"{task}__{model}{suffix}"

    def save(self, version: str, task: str, model: str, artifact: object, card: dict) -> str:
        """Write the artifact and its card; return the artifact path relative to the root."""
        target = self.path(version, task, model)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        joblib.dump(artifact, tmp)
        tmp.replace(target)
        self.path(version, task, model, ".json").write_text(json.dumps(card, indent=2, default=str))
        return str(target.relative_to(self.root_path()))

    def load(self, version: str, task: str, model: str) -> object:
        target = self.path(version, task, model)
        if not target.exists():
            raise FileNotFoundError(
                f"model {task}/{model} of version {version} is not in {self.root_path()}: "
                "materialize model_metrics/model_cards first"
            )
        return joblib.load(target)

    def card(self, version: str, task: str, model: str) -> dict:
        return json.loads(self.path(version, task, model, ".json").read_text())

    def versions(self) -> list[str]:
        root = self.root_path()
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []

    def prune(self, keep: int, protect: set[str] = frozenset()) -> list[str]:
        """Remove all but the ``keep`` newest versions (by folder time), never one in
        ``protect`` (the version in service); returns the versions removed."""
        if keep < 1:
            raise ValueError(f"keep={keep}: keep at least the version in service")
        root = self.root_path()
        folders = [p for p in root.iterdir() if p.is_dir()] if root.exists() else []
        folders.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        removed = []
        for folder in folders[keep:]:
            if folder.name not in protect:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        return removed
