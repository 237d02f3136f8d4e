"""Where the pipeline keeps things: raw requests in S3, claim checks on SQS, state in one DynamoDB table.

Table layout (partition key `pk` only; a GSI `gsi1pk`/`gsi1sk` lists records by type and status over time):

| item         | pk                     | main attributes                                              |
|--------------|------------------------|--------------------------------------------------------------|
| record       | REC#<recordId>         | recordId, batchId, status PROCESSED/REJECTED, reason, result |
| batch        | BATCH#<batchId>        | accepted, processed, rejected, duplicates, ids, rawKey       |
| duplicate    | DUP#<batchId>#<id>     | marks an id already stored by another batch (counted once)   |
| idempotency  | IDEM#<Idempotency-Key> | requestHash, batchId, response, claimCheck, enqueued         |

Every write that counts is conditional, so an SQS redelivery never stores or counts a record twice.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

PROCESSED = "PROCESSED"
REJECTED = "REJECTED"
GSI_NAME = "by-type-status"
# A transaction holds at most 100 items: 99 record puts plus the batch counter update.
TRANSACTION_RECORDS = 99

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_dynamo(value: Any) -> Any:
    """JSON-compatible value -> value boto3 can store (floats become Decimal, as DynamoDB requires)."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {key: to_dynamo(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_dynamo(item) for item in value]
    return value


def from_dynamo(value: Any) -> Any:
    """Value read from DynamoDB -> plain JSON-compatible value."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: from_dynamo(item) for key, item in value.items()}
    if isinstance(value, list | set):
        return [from_dynamo(item) for item in value]
    return value


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(to_dynamo(value)) for key, value in item.items()}


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {key: from_dynamo(_deserializer.deserialize(value)) for key, value in item.items()}


def epoch_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def _already_stored(error: ClientError, puts: int) -> list[bool] | None:
    """From a cancelled store transaction (`puts` record puts, then the batch counter update): which puts
    failed their `attribute_not_exists` condition. None when the reasons are missing or do not line up."""
    reasons = error.response.get("CancellationReasons")
    if not isinstance(reasons, list) or len(reasons) != puts + 1:
        return None
    return [reason.get("Code") == "ConditionalCheckFailed" for reason in reasons[:puts]]


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass(frozen=True)
class ClaimCheck:
    """The SQS message: a pointer to the raw request in S3, never the payload itself."""

    batch_id: str
    bucket: str
    key: str
    correlation_id: str
    received_at: str
    record_count: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "batchId": self.batch_id,
                "bucket": self.bucket,
                "key": self.key,
                "correlationId": self.correlation_id,
                "receivedAt": self.received_at,
                "recordCount": self.record_count,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, body: str) -> ClaimCheck:
        message = json.loads(body)
        return cls(
            batch_id=str(message["batchId"]),
            bucket=str(message["bucket"]),
            key=str(message["key"]),
            correlation_id=str(message.get("correlationId", "")),
            received_at=str(message["receivedAt"]),
            record_count=int(message["recordCount"]),
        )


@dataclass(frozen=True)
class Outcome:
    """What processing decided for one record."""

    record_id: str
    status: str
    type: str
    result: dict[str, Any] | None = None
    reason: str | None = None


class RawStore:
    """Raw request bodies, kept before any parsing so nothing a producer sent is ever lost."""

    def __init__(self, s3: Any, bucket: str, prefix: str) -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix

    def key_for(self, batch_id: str, received_at: datetime) -> str:
        return f"{self.prefix}{received_at:%Y/%m/%d/%H}/{batch_id}.json"

    def put(self, key: str, body: bytes, correlation_id: str) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            Metadata={"correlation-id": correlation_id},
        )

    def get(self, bucket: str, key: str) -> bytes:
        data: bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return data


class ClaimCheckQueue:
    def __init__(self, sqs: Any, queue_url: str) -> None:
        self.sqs, self.queue_url = sqs, queue_url

    def send(self, claim: ClaimCheck) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=claim.to_json())


class PipelineTable:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self.db, self.name = dynamodb, table_name

    # --- ingest ---------------------------------------------------------------------------------
    def claim_idempotency_key(
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
            if not _is_condition_failure(error):
                raise
        stored = self.db.get_item(TableName=self.name, Key={"pk": {"S": f"IDEM#{key}"}}, ConsistentRead=True)
        return deserialize(stored["Item"])

    def take_over_idempotency_key(self, key: str, now: datetime, lease_until: datetime) -> bool:
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
            if not _is_condition_failure(error):
                raise
            return False

    def release_idempotency_key(self, key: str) -> None:
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

    def create_batch(self, claim: ClaimCheck, ids: Sequence[str], expires: datetime) -> None:
        item = {
            "pk": f"BATCH#{claim.batch_id}",
            "batchId": claim.batch_id,
            "accepted": len(ids),
            "processed": 0,
            "rejected": 0,
            "duplicates": 0,
            "ids": list(ids),
            "rawKey": claim.key,
            "correlationId": claim.correlation_id,
            "receivedAt": claim.received_at,
            "expiresAt": epoch_seconds(expires),
        }
        try:
            self.db.put_item(
                TableName=self.name, Item=serialize(item), ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise  # an existing batch is a retried request finishing what it started: fine

    # --- processing -----------------------------------------------------------------------------
    def store_outcomes(
        self, batch_id: str, outcomes: Sequence[Outcome], expires: datetime, now: datetime
    ) -> list[Outcome]:
        """Store outcomes and count them on the batch, exactly once each. Returns the ones stored now."""
        stored: list[Outcome] = []
        for start in range(0, len(outcomes), TRANSACTION_RECORDS):
            pending = list(outcomes[start : start + TRANSACTION_RECORDS])
            while pending:
                try:
                    self._transact(batch_id, pending, expires, now)
                    stored.extend(pending)
                    break
                except ClientError as error:
                    if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                        raise
                    exists = _already_stored(error, len(pending))
                    if exists is None:
                        # No usable reasons: settle the records one by one.
                        stored.extend(o for o in pending if self._store_one(batch_id, o, expires, now))
                        break
                    if not any(exists):
                        raise  # cancelled for another reason (e.g. a conflicting write): SQS retries it
                # Records stored by an earlier delivery (or by another batch) leave the transaction; the
                # rest is retried at once, so a redelivery costs one extra call, not one per record.
                for outcome in (o for o, stored_before in zip(pending, exists, strict=True) if stored_before):
                    self._settle_existing(batch_id, outcome, expires)
                pending = [o for o, stored_before in zip(pending, exists, strict=True) if not stored_before]
        return stored

    def _transact(self, batch_id: str, chunk: Sequence[Outcome], expires: datetime, now: datetime) -> None:
        processed = sum(1 for outcome in chunk if outcome.status == PROCESSED)
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.name,
                    "Item": serialize(self._record_item(batch_id, outcome, expires, now)),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for outcome in chunk
        ]
        items.append(self._count(batch_id, processed=processed, rejected=len(chunk) - processed))
        self.db.transact_write_items(TransactItems=items)

    def _store_one(self, batch_id: str, outcome: Outcome, expires: datetime, now: datetime) -> int:
        try:
            self._transact(batch_id, [outcome], expires, now)
            return 1
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
        self._settle_existing(batch_id, outcome, expires)
        return 0

    def _settle_existing(self, batch_id: str, outcome: Outcome, expires: datetime) -> None:
        """`outcome`'s record id is already stored: by this batch (nothing to do) or by another one."""
        existing = self.get_record(outcome.record_id)
        if existing is None:
            raise RuntimeError(f"record {outcome.record_id}: transaction cancelled but no record stored")
        if existing.get("batchId") == batch_id:
            return  # stored and counted by an earlier delivery of this message
        # The id was already used by another batch: keep the first record, count a duplicate once.
        marker = {"pk": f"DUP#{batch_id}#{outcome.record_id}", "expiresAt": epoch_seconds(expires)}
        try:
            self.db.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.name,
                            "Item": serialize(marker),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    self._count(batch_id, duplicates=1),
                ]
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise

    def _count(
        self, batch_id: str, processed: int = 0, rejected: int = 0, duplicates: int = 0
    ) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.name,
                "Key": {"pk": {"S": f"BATCH#{batch_id}"}},
                # `processed` is a DynamoDB reserved word: every name goes through a placeholder.
                "UpdateExpression": "ADD #p :p, #r :r, #d :d",
                "ExpressionAttributeNames": {"#p": "processed", "#r": "rejected", "#d": "duplicates"},
                "ExpressionAttributeValues": {
                    ":p": {"N": str(processed)},
                    ":r": {"N": str(rejected)},
                    ":d": {"N": str(duplicates)},
                },
            }
        }

    @staticmethod
    def _record_item(batch_id: str, outcome: Outcome, expires: datetime, now: datetime) -> dict[str, Any]:
        processed_at = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        item: dict[str, Any] = {
            "pk": f"REC#{outcome.record_id}",
            "recordId": outcome.record_id,
            "batchId": batch_id,
            "status": outcome.status,
            "type": outcome.type,
            "processedAt": processed_at,
            "gsi1pk": f"{outcome.type}#{outcome.status}",
            "gsi1sk": f"{processed_at}#{outcome.record_id}",
            "expiresAt": epoch_seconds(expires),
        }
        if outcome.result is not None:
            item["result"] = outcome.result
        if outcome.reason is not None:
            item["reason"] = outcome.reason
        return item

    def record_failure(self, batch_id: str, error: str) -> None:
        """Best effort: note the last processing error on the batch, for `rtp dlq peek` and the status API."""
        # The original failure matters (it is logged and the message redelivered): ignore this one.
        with contextlib.suppress(ClientError):
            self.db.update_item(
                TableName=self.name,
                Key={"pk": {"S": f"BATCH#{batch_id}"}},
                UpdateExpression="SET lastError = :e",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":e": {"S": error[:1000]}},
            )

    # --- queries --------------------------------------------------------------------------------
    def get_record(self, record_id: str) -> dict[str, Any] | None:
        return self._get(f"REC#{record_id}")

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        return self._get(f"BATCH#{batch_id}")

    def _get(self, pk: str) -> dict[str, Any] | None:
        found = self.db.get_item(TableName=self.name, Key={"pk": {"S": pk}})
        return deserialize(found["Item"]) if "Item" in found else None


def ttl(now: datetime, days: int = 0, hours: int = 0) -> datetime:
    return now + timedelta(days=days, hours=hours)
