"""Idempotency keys: a client's `Idempotency-Key` header, leased to the request that first used it.

Kept apart from the outcome store (`rtp_pipeline.storage`): ingest alone uses it. An `IDEM#<key>` item holds
the request's hash, its claim check and its answer (without the ids: a replay has the same body, so the
same ids). One write per key: no "enqueued" mark and no lease. A retry whose batch is not settled yet
enqueues the first request's claim check again (`Ingestor._replay`), which stores and counts nothing twice.
"""

from __future__ import annotations

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
        now: datetime,
        key: str,
        request_hash: str,
        claim: ClaimCheck,
        response: dict[str, Any],
        expires: datetime,
    ) -> dict[str, Any] | None:
        """Record a new idempotency key. Returns None if the key is new (or its item is past `expiresAt`:
        TTL deletes lag, and expired items still read:
        https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ttl-expired-items.html), else the
        item stored earlier. A key lives no longer than its batch item (ingest), so a key answered from
        here always finds its batch."""
        item = {
            "pk": f"IDEM#{key}",
            "requestHash": request_hash,
            "batchId": claim.batch_id,
            "claimCheck": claim.to_json(),
            "response": json.dumps(response),
            "expiresAt": epoch_seconds(expires),
        }
        try:
            self.db.put_item(
                TableName=self.name,
                Item=serialize(item),
                ConditionExpression="attribute_not_exists(pk) OR expiresAt < :now",
                ExpressionAttributeValues={":now": {"N": str(epoch_seconds(now))}},
                # A refused put returns the stored item, no read units:
                # https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_PutItem.html
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return None
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            stored: Any = error.response.get("Item")
        if not isinstance(stored, dict):  # not returned: read it
            stored = self.db.get_item(
                TableName=self.name, Key={"pk": {"S": f"IDEM#{key}"}}, ConsistentRead=True
            )["Item"]
        return deserialize(stored)
