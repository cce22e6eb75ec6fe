"""The preference center's part of access and erasure requests.

Topic choices and their history are preferences of a (pseudonymous) person: erasure
deletes them, and revokes every link mailed to the subject so none opens anything again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from preference_center.models import TopicSubscription, TopicSubscriptionChange
from preference_center.tokens import revoke_links
from zeroparty import personal_data

PROVIDER = "preference_center"


def export_topics(session: Session, subject_id: str) -> dict[str, Any]:
    stmt = select(TopicSubscription.topic_key, TopicSubscription.subscribed).where(
        TopicSubscription.subject_id == subject_id
    )
    return {"topics": {key: bool(on) for key, on in session.execute(stmt).all()}}


def erase_topics(session: Session, subject_id: str) -> None:
    session.execute(delete(TopicSubscription).where(TopicSubscription.subject_id == subject_id))
    session.execute(
        delete(TopicSubscriptionChange).where(TopicSubscriptionChange.subject_id == subject_id)
    )
    revoke_links(session, subject_id)


PERSONAL_DATA = personal_data.PersonalData(PROVIDER, export_topics, erase_topics)
