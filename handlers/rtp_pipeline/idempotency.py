"""Idempotency keys: a client's `Idempotency-Key` header, leased to the request that first used it.

Kept apart from the outcome store (`rtp_pipeline.storage`): ingest alone uses it. An `IDEM#<key>` item holds
the request's hash, its claim check and its answer (without the ids: a replay has the same body, so the
same ids), whether it was enqueued, and until when the first request holds the key (`leaseUntil`).
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from rtp_pipeline.storage import ClaimCheck, deserialize, epoch_seconds, is_condition_failure, serialize


class IdempotencyKeys:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self.db, self.name = dynamodb, table_name

    def claim(
        self,
        key: str,
        request_hash: str,
        claim: ClaimCheck,
        response: dict[str, Any],
        expires: datetime,
        lease_until: datetime,
    ) -> dict[str, Any] | None:
        """Record a new idempotency key, leased to this request until `lease_until` (by then it has
        enqueued or died). Returns None if the key is new, else the item stored earlier."""
        item = {
            "leaseUntil": epoch_seconds(lease_until),
            "pk": f"IDEM#{key}",
            "requestHash": request_hash,
            "batchId": claim.batch_id,
            "claimCheck": claim.to_json(),
            "response": json.dumps(response),
            "enqueued": False,
            "expiresAt": epoch_seconds(expires),
        }
        try:
            self.db.put_item(
                TableName=self.name, Item=serialize(item), ConditionExpression="attribute_not_exists(pk)"
            )
            return None
        except ClientError as error:
            if not is_condition_failure(error):
                raise
        stored = self.db.get_item(TableName=self.name, Key={"pk": {"S": f"IDEM#{key}"}}, ConsistentRead=True)
        return deserialize(stored["Item"])

    def take_over(self, key: str, now: datetime, lease_until: datetime) -> bool:
        """Take the work of a key whose first request died before enqueueing (its lease ran out).
        False while that request may still be running, or once the work is done."""
        try:
            self.db.update_item(
                TableName=self.name,
                Key={"pk": {"S": f"IDEM#{key}"}},
                UpdateExpression="SET leaseUntil = :until",
                ConditionExpression="enqueued = :no AND leaseUntil < :now",
                ExpressionAttributeValues={
                    ":until": {"N": str(epoch_seconds(lease_until))},
                    ":no": {"BOOL": False},
                    ":now": {"N": str(epoch_seconds(now))},
                },
            )
            return True
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            return False

    def release(self, key: str) -> None:
        """Best effort: end this request's lease early (it failed before enqueueing)."""
        # On failure the lease runs out on its own; the original error is what the caller sees.
        with contextlib.suppress(ClientError):
            self.db.update_item(
                TableName=self.name,
                Key={"pk": {"S": f"IDEM#{key}"}},
                UpdateExpression="SET leaseUntil = :past",
                ConditionExpression="enqueued = :no",
                ExpressionAttributeValues={":past": {"N": "0"}, ":no": {"BOOL": False}},
            )

    def mark_enqueued(self, key: str) -> None:
        self.db.update_item(
            TableName=self.name,
            Key={"pk": {"S": f"IDEM#{key}"}},
            UpdateExpression="SET enqueued = :yes",
            ExpressionAttributeValues={":yes": {"BOOL": True}},
        )
