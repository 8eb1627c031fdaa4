"""Asset checks that can say SKIPPED: the data could not be scored, which is neither a pass
nor a failure.

Dagster records a check as SKIPPED when its op succeeds without yielding a result for it, which
a ``multi_asset_check`` with ``can_subset`` may do. ``skippable_check`` declares one such check
(its op named after it, which is how the snapshot's ``check_results`` find it) and ``skip`` logs
the reason that ``check_results`` then shows.
"""

from collections.abc import Mapping

import dagster as dg


def skippable_check(
    name: str,
    *,
    asset: str,
    description: str,
    blocking: bool = False,
    ins: Mapping[str, dg.AssetIn] | None = None,
):
    """Decorate a generator that yields one ``AssetCheckResult``, or calls ``skip`` and returns.

    Only checks that must stop downstream assets on an ERROR are ``blocking``; a warning never
    is (``serving_snapshot`` runs after every check anyway).
    """
    return dg.multi_asset_check(
        specs=[dg.AssetCheckSpec(name, asset=asset, description=description, blocking=blocking)],
        can_subset=True,
        ins=dict(ins or {}),
        name=name,
    )


def skip(context: dg.AssetCheckExecutionContext, reason: str) -> None:
    """Log why the check could not score the data; the caller then returns without a result."""
    context.log.warning(f"{context.op_def.name} skipped: {reason}")
