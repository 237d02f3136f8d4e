"""Where the pipeline keeps things: raw requests in S3, claim checks on SQS, state in one DynamoDB table.

Table layout (partition key `pk` only; a GSI `gsi1pk`/`gsi1sk` lists records by type and status over time):

| item         | pk                     | main attributes                                              |
|--------------|------------------------|--------------------------------------------------------------|
| record       | REC#<recordId>         | recordId, batchId, status PROCESSED/REJECTED, reason, result |
| batch        | BATCH#<batchId>        | accepted, processed, rejected, duplicates, ids, rawKey       |
| duplicate    | DUP#<batchId>#<id>     | marks an id already stored by another batch (counted once)   |
| idempotency  | IDEM#<Idempotency-Key> | requestHash, batchId, response, claimCheck, enqueued         |

Every write that counts is conditional, so an SQS redelivery never stores or counts a record twice. An item
DynamoDB refuses for its content (a `ValidationException`, or a cancelled transaction whose reason for that
item is `ValidationError`) never takes its neighbours down: that record is stored as REJECTED with
DynamoDB's reason and the rest of the transaction is written.
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
from botocore.exceptions import ClientError, ParamValidationError

PROCESSED = "PROCESSED"
REJECTED = "REJECTED"
GSI_NAME = "by-type-status"
# A transaction holds at most 100 items: 99 record puts plus the batch counter update.
TRANSACTION_RECORDS = 99
# BatchGetItem reads at most 100 keys per call.
BATCH_GET_KEYS = 100
# Key attributes hold at most 2048 bytes (partition keys) and 1024 (sort keys), GSI keys included:
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html#limits-partition-sort-keys
KEY_LIMITS = {"pk": 2048, "gsi1pk": 2048, "gsi1sk": 1024}
# A REJECTED record's reason is kept short: it explains, it does not carry data.
MAX_REASON_CHARS = 2000
# Cancellation reason codes that mean "DynamoDB refuses this item as written" (its content: size, a number
# out of range, nesting, an empty name...). "ValidationError" is DynamoDB's, listed in
# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html (Errors,
# TransactionCanceledException); moto reports "ValidationException" for the same refusals.
_ITEM_REFUSED = frozenset({"ValidationError", "ValidationException"})

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_dynamo(value: Any) -> Any:
    """JSON-compatible value -> value boto3 can store (floats become Decimal, as DynamoDB requires)."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**38:
        return _without_trailing_zeros(value)
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


def _without_trailing_zeros(value: int) -> Decimal:
    """10**40 as Decimal('1E+40'): DynamoDB counts significant digits, but boto3 refuses an int of more
    than 38 digits even when the extra ones are trailing zeros (its context traps `Rounded`)."""
    sign, digits, exponent = Decimal(value).as_tuple()
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return Decimal((sign, digits[: len(digits) - trailing], int(exponent) + trailing))


def readable(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text` safe to store and show: lone surrogates escaped (not UTF-8), at most `limit` characters."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(to_dynamo(value)) for key, value in item.items()}


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {key: from_dynamo(_deserializer.deserialize(value)) for key, value in item.items()}


def epoch_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def _cancellation_codes(error: ClientError, puts: int) -> list[tuple[str, str]] | None:
    """From a cancelled store transaction (`puts` record puts, then the batch counter update): each put's
    (code, message). None when the reasons are missing or do not line up."""
    reasons = error.response.get("CancellationReasons")
    if not isinstance(reasons, list) or len(reasons) != puts + 1:
        return None
    return [(str(reason.get("Code")), str(reason.get("Message", ""))) for reason in reasons[:puts]]


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _is_condition_failure(error: ClientError) -> bool:
    return _error_code(error) == "ConditionalCheckFailedException"


def refused_by_dynamodb(outcome: Outcome, why: str) -> Outcome:
    """The REJECTED outcome stored instead of one DynamoDB refused for its content."""
    if outcome.status == REJECTED and outcome.result is None:
        # Already the smallest item this record can have: the refusal is not about the record's content.
        raise RuntimeError(f"DynamoDB refused the REJECTED record {outcome.record_id}: {why}")
    return Outcome(
        outcome.record_id, REJECTED, outcome.type, reason=readable(f"DynamoDB cannot store the result: {why}")
    )


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
    def stored_owners(self, record_ids: Sequence[str]) -> dict[str, str]:
        """Which of these record ids are already stored, and by which batch: {record id: batch id}.

        BatchGetItem, 100 keys per call, eventually consistent: it only saves work (a redelivery skips
        what an earlier delivery stored, minutes earlier), while exactly-once storage rests on the
        conditional writes. Keys DynamoDB leaves unprocessed are simply not reported."""
        owners: dict[str, str] = {}
        unique = list(dict.fromkeys(record_ids))
        for start in range(0, len(unique), BATCH_GET_KEYS):
            keys = [{"pk": {"S": f"REC#{record_id}"}} for record_id in unique[start : start + BATCH_GET_KEYS]]
            request: dict[str, Any] = {self.name: {"Keys": keys, "ProjectionExpression": "recordId, batchId"}}
            for _ in range(3):  # unprocessed keys (throttling, 16 MB pages) are asked for again, briefly
                answer = self.db.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.name, []):
                    owners[item["recordId"]["S"]] = item["batchId"]["S"]
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
        return owners

    def store_outcomes(
        self, batch_id: str, outcomes: Sequence[Outcome], expires: datetime, now: datetime
    ) -> list[Outcome]:
        """Store outcomes and count them on the batch, exactly once each. Returns the outcomes stored now,
        as stored: an outcome DynamoDB refused for its content comes back as the REJECTED one stored instead.
        Anything else (throttling, a conflict, a service error) raises, for SQS to redeliver."""
        stored: list[Outcome] = []
        for start in range(0, len(outcomes), TRANSACTION_RECORDS):
            stored.extend(
                self._store_chunk(batch_id, list(outcomes[start : start + TRANSACTION_RECORDS]), expires, now)
            )
        return stored

    def _store_chunk(
        self, batch_id: str, pending: list[Outcome], expires: datetime, now: datetime
    ) -> list[Outcome]:
        pending = [self._serializable(batch_id, outcome, expires, now) for outcome in pending]
        while pending:
            try:
                self._transact(batch_id, pending, expires, now)
                return pending
            except ParamValidationError:
                return self._store_each(batch_id, pending, expires, now)  # which one? each on its own
            except ClientError as error:
                code = _error_code(error)
                if code == "ValidationException":  # the request as a whole: one of its items is refused
                    return self._store_each(batch_id, pending, expires, now)
                if code != "TransactionCanceledException":
                    raise
                reasons = _cancellation_codes(error, len(pending))
                if reasons is None:
                    return self._store_each(batch_id, pending, expires, now)  # no usable reasons
                exists = [reason == "ConditionalCheckFailed" for reason, _ in reasons]
                refused = [reason in _ITEM_REFUSED for reason, _ in reasons]
                if not any(exists) and not any(refused):
                    raise  # cancelled for another reason (a conflicting write, throttling): SQS retries it
            # Records stored by an earlier delivery (or by another batch) leave the transaction; a record
            # DynamoDB refuses becomes REJECTED with its reason; the rest is retried at once, so a
            # redelivery costs one extra call, not one per record.
            next_pending: list[Outcome] = []
            for outcome, stored_before, refusal, (_, message) in zip(
                pending, exists, refused, reasons, strict=True
            ):
                if stored_before:
                    self._settle_existing(batch_id, outcome, expires)
                elif refusal:
                    next_pending.append(refused_by_dynamodb(outcome, message))
                else:
                    next_pending.append(outcome)
            pending = next_pending
        return []

    def _store_each(
        self, batch_id: str, outcomes: Sequence[Outcome], expires: datetime, now: datetime
    ) -> list[Outcome]:
        stored: list[Outcome] = []
        for outcome in outcomes:
            settled = self._store_one(batch_id, outcome, expires, now)
            if settled is not None:
                stored.append(settled)
        return stored

    def _store_one(self, batch_id: str, outcome: Outcome, expires: datetime, now: datetime) -> Outcome | None:
        """One record in its own transaction. Returns what was stored, or None if it was stored before."""
        for _ in range(2):  # the outcome, then (if DynamoDB refuses its content) its REJECTED stand-in
            try:
                self._transact(batch_id, [outcome], expires, now)
                return outcome
            except ParamValidationError as error:
                outcome = refused_by_dynamodb(outcome, str(error))
            except ClientError as error:
                code = _error_code(error)
                reasons = _cancellation_codes(error, 1) if code == "TransactionCanceledException" else None
                if code == "ValidationException":
                    outcome = refused_by_dynamodb(outcome, error.response.get("Error", {}).get("Message", ""))
                elif reasons and reasons[0][0] in _ITEM_REFUSED:
                    outcome = refused_by_dynamodb(outcome, reasons[0][1])
                elif code == "TransactionCanceledException" and (
                    reasons is None or reasons[0][0] == "ConditionalCheckFailed"
                ):
                    self._settle_existing(batch_id, outcome, expires)
                    return None
                else:
                    raise
        raise RuntimeError(f"record {outcome.record_id}: DynamoDB refused its REJECTED stand-in")

    def _serializable(self, batch_id: str, outcome: Outcome, expires: datetime, now: datetime) -> Outcome:
        """The outcome, or its REJECTED stand-in if its item cannot even be serialized (a type boto3 does
        not know, a number boto3 cannot convert)."""
        try:
            serialize(self.record_item(batch_id, outcome, expires, now))
        except (TypeError, ValueError, ArithmeticError) as error:  # DecimalException is an ArithmeticError
            return refused_by_dynamodb(outcome, f"{type(error).__name__}: {error}")
        return outcome

    def _transact(self, batch_id: str, chunk: Sequence[Outcome], expires: datetime, now: datetime) -> None:
        processed = sum(1 for outcome in chunk if outcome.status == PROCESSED)
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.name,
                    "Item": serialize(self.record_item(batch_id, outcome, expires, now)),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for outcome in chunk
        ]
        items.append(self._count(batch_id, processed=processed, rejected=len(chunk) - processed))
        self.db.transact_write_items(TransactItems=items)

    def _settle_existing(self, batch_id: str, outcome: Outcome, expires: datetime) -> None:
        """`outcome`'s record id is already stored: by this batch (nothing to do) or by another one."""
        existing = self.get_record(outcome.record_id)
        if existing is None:
            raise RuntimeError(f"record {outcome.record_id}: transaction cancelled but no record stored")
        if existing.get("batchId") != batch_id:
            self.count_duplicate(batch_id, outcome.record_id, expires)
        # else: stored and counted by an earlier delivery of this message

    def count_duplicate(self, batch_id: str, record_id: str, expires: datetime) -> None:
        """The id was already used by another batch: keep the first record, count a duplicate once."""
        marker = {"pk": f"DUP#{batch_id}#{record_id}", "expiresAt": epoch_seconds(expires)}
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
    def record_item(batch_id: str, outcome: Outcome, expires: datetime, now: datetime) -> dict[str, Any]:
        processed_at = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        # The type is part of a GSI key (at most 2048 bytes, never empty): bounded and readable, always.
        record_type = readable(outcome.type, 200) or "unknown"
        item: dict[str, Any] = {
            "pk": f"REC#{outcome.record_id}",
            "recordId": outcome.record_id,
            "batchId": batch_id,
            "status": outcome.status,
            "type": record_type,
            "processedAt": processed_at,
            "gsi1pk": f"{record_type}#{outcome.status}",
            "gsi1sk": f"{processed_at}#{outcome.record_id}",
            "expiresAt": epoch_seconds(expires),
        }
        if outcome.result is not None:
            item["result"] = outcome.result
        if outcome.reason is not None:
            item["reason"] = readable(outcome.reason)
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
