"""One user: profile, segment, predictions with reasons, recent activity, recommendations."""

from typing import Annotated

from fastapi import Path, Query

from ubap_api.deps import ReaderDep, guarded_router
from ubap_api.records import not_found, records, round_row, with_reasons
from ubap_api.schemas import NOT_FOUND, UserDetail
from ubap_assets.warehouse import tables as t

router = guarded_router("/api/users", "users")


@router.get("/{user_id}", summary="One user", response_model=UserDetail, responses=NOT_FOUND)
def user_detail(
    reader: ReaderDep,
    user_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=200,
            description="The user's id as in the events (see /api/predictions/high-value/best).",
        ),
    ],
    activity: Annotated[
        int, Query(ge=1, le=200, description="How many recent events to return, newest first.")
    ] = 20,
) -> dict:
    """Everything known about one user in the current snapshot: profile, segment, the two
    model scores with the reasons for the purchase score, recent events and the top 5
    recommended pages. 404 for an id that is not in the snapshot."""
    user = reader.user(user_id)
    if user is None:
        raise not_found("user", user_id, "see /api/predictions/high-value/best for user ids")
    prediction = reader.user_prediction(user_id)
    segment = reader.user_segment(user_id)
    recs = None
    if reader.has_table(t.USER_RECOMMENDATIONS):
        recs = reader.user_recommendations(user_id, 5)
    return {
        "user": user,
        "segment": round_row(segment) if segment else None,
        "predictions": with_reasons(round_row(prediction)) if prediction else None,
        "recent_activity": records(reader.recent_activity(user_id, activity)),
        "recommendations": records(recs) if recs is not None else [],
    }
