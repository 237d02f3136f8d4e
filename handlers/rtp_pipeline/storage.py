"""Where the pipeline keeps things: raw requests in S3, claim checks on SQS, state in one DynamoDB table.

Table layout (partition key `pk`: every item is written and read on a key of its own; one sparse index,
`rejected`, on REJECTED record items only: `rk`, `rs`, see `rejected_index_keys`):

| item        | pk                     | attributes                                                        |
|-------------|------------------------|-------------------------------------------------------------------|
| record      | REC#<recordId>         | b batchId, s status P/R, t type, at processedAt, expiresAt,       |
|             |                        | v transform version, r result (a map) or z result (zlib JSON), or |
|             |                        | e reason; once replayed: rp replay id, ps previous status, ra when |
| batch       | `batch_pk`: BATCH#<id> | batchId, accepted, processed, rejected, duplicates, cc counted    |
|             | or, keyed, BATCH#K<..> | chunks, rc replayed chunks (`<replayId>:<chunk>`), leases         |
|             |                        | l<n>/rl<n>, requestHash (keyed: the Idempotency-Key's claim), ... |
| batch ids   | IDS#<batchId>          | ids (newline-joined), only when the client named some records     |

A record item carries one-letter bookkeeping names (the names count towards the item's size, and the size
rounds up to whole 1 KB write units); `PipelineTable.get_record` gives them their long names back.

Exactly once, without transactions (a transactional write costs twice a plain one):
- The batch counters move once per chunk of `CHUNK_RECORDS` records (by index in the request), by one
  UpdateItem that ADDs the chunk's counts and its number to the set `cc`, conditioned on `cc` not holding
  that number yet. A chunk is counted only when every record of it is settled, and its counts come from
  what the table holds, never from what one delivery meant to write. A crash between the record writes and
  the counter update leaves the chunk uncounted; the redelivery reads the stored items and counts it.
- A record a client named (its id may be another batch's too) is written only if its id is not stored
  yet: stored once whatever redelivers it, first writer wins. It is a PartiQL INSERT, 25 to a
  BatchExecuteStatement (INSERT refuses an existing key; each statement is a plain write, where
  BatchWriteItem takes no condition and TransactWriteItems costs double). An INSERT refused as a duplicate
  is redone as one PutItem conditioned on `attribute_not_exists(pk)`, whose refusal returns the stored item
  (ReturnValuesOnConditionCheckFailure=ALL_OLD, no read units), so the writer learns whether this batch
  stored it earlier or another batch owns the id (one duplicate, counted with the chunk).
- A record without a client id has an id only its own batch can produce (`<batchId>-<index>`; ingest
  refuses client ids of that shape), so only deliveries of its own message write it. A chunk with at least
  `LEASED_WRITE_MIN` such records writes them with BatchWriteItem (25 items a call, no condition) under a
  chunk lease: one conditional UpdateItem on the batch item gives the chunk to one delivery until its
  invocation's time runs out (Lambda ends it by then), and only the holder may count the chunk. Two
  deliveries of one message running at once (SQS is at-least-once) therefore never mix their outcomes
  into one chunk's items and counts, even for a transform that decides differently each time. A first
  delivery leases all such chunks of its message in one UpdateItem (`lease_chunks`, refused as a whole if
  any is counted or held: the chunks then go one at a time) and counts the settled ones in another
  (`count_chunks`, which gives back the leases of the others): the same items and sets, 2 updates per
  message instead of 2 per chunk.

A batch of one record whose id the API assigned (`counted_by_record`, `byRecord` on the batch item) keeps no
counters: its record item is its count (only its own batch can write that id), so it costs no counter
update; `get_batch` fills its counters in from the record item.

A replay (`rtp replay`: a claim check with a `replay` member, on the replay queue) replaces the outcomes of
the records a batch stored that its filters select, chunk by chunk under a replay lease (`rl<chunk>`): each
replaced item carries the replay's id and the status it had before, and one UpdateItem per chunk moves the
counters by the change (new status minus previous, from the marked items) and adds `<replayId>:<chunk>` to
`rc`, conditioned on `rc` not holding it yet. A redelivered or resent replay message therefore replaces and
counts nothing twice; a crash between the writes and the count is repaired from the marks.

An item DynamoDB refuses for its content (a `ValidationException`, or a client-side ParamValidationError)
never takes its neighbours down: that record is stored as REJECTED with DynamoDB's reason.

Items written by the layout before this one (long names, a GSI, ids in the batch item) are not migrated.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import random
import re
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

PROCESSED = "PROCESSED"
REJECTED = "REJECTED"
_STATUS_CODES = {PROCESSED: "P", REJECTED: "R"}
_STATUS_NAMES = {code: name for name, code in _STATUS_CODES.items()}
# Records counted together on the batch: one counter update per chunk. Also BatchGetItem's limit (100
# keys per call), so that a redelivery reads one chunk's stored items in one call.
CHUNK_RECORDS = 100
BATCH_GET_KEYS = 100
# BatchWriteItem takes at most 25 put requests per call:
# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html
BATCH_WRITE_ITEMS = 25
# A chunk with at least this many records its batch owns writes them in BatchWriteItem calls under a lease
# (two small updates on the batch item); below it, conditional puts are cheaper than the lease.
LEASED_WRITE_MIN = 4
# A first delivery leases and counts up to this many such chunks in one UpdateItem each (`lease_chunks`,
# `count_chunks`): 2 updates per 1,000 records instead of 20. Its condition grows by about 75 characters and
# 7 operators a chunk; DynamoDB allows an expression string of at most 4 KB and 300 operators or functions:
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Constraints.html#limits-expression-parameters
MAX_RUN_CHUNKS = 10
# Conditional puts (records a client named) in flight at once; below botocore's 10 pooled connections.
PUT_CONCURRENCY = 8
# UnprocessedItems (throttling inside a batch) are written again this many times, with full-jitter backoff.
BATCH_WRITE_ATTEMPTS = 8
# Key attributes hold at most 2048 bytes (partition keys):
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html#limits-partition-sort-keys
KEY_LIMITS = {"pk": 2048}
# A REJECTED record's reason is kept short: it explains, it does not carry data.
MAX_REASON_CHARS = 2000
# Results whose JSON is at least this long are stored zlib-compressed when that makes them smaller. Write
# units are whole KB of item size (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
# read-write-operations.html#write-operation-consumption): below about 200 bytes compression cannot save a
# unit and costs CPU both ways. The trade-off: a compressed result is opaque to DynamoDB (no projection
# or filter on its fields, unreadable in the console); the query path decompresses it transparently.
COMPRESS_MIN_BYTES = 200
# DynamoDB's refusals of an item's content.
_ITEM_REFUSED = frozenset({"ValidationError", "ValidationException"})
# A BatchExecuteStatement statement's error codes (BatchStatementError.Code): those `_put_record` settles
# (the id is stored already; the item's content), and those worth sending again (throttling, the service).
# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchStatementError.html
# ConditionalCheckFailed: not what the INSERT page says a duplicate gets, but settled the same way if it is.
_NOT_INSERTED = frozenset({"DuplicateItem", "ConditionalCheckFailed", "ValidationError"})
_TRY_AGAIN = frozenset(
    {
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
        "InternalServerError",
        "TransactionConflict",
    }
)

_PLAIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Batch ids: a ULID (26 Crockford base32 characters: 10 of millisecond time, 16 random), or with an
# Idempotency-Key, the 10 time characters, `K`, and 16 characters of the key's hash
# (rtp_pipeline.idempotency).
BATCH_ID = re.compile(rf"[{CROCKFORD}]{{10}}K?[{CROCKFORD}]{{16}}")
KEYED_BATCH_ID = re.compile(rf"[{CROCKFORD}]{{10}}K[{CROCKFORD}]{{16}}")
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


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _item_returned(error: ClientError) -> dict[str, Any]:
    """The item a failed condition returned (ReturnValuesOnConditionCheckFailure=ALL_OLD); {} if none."""
    item: Any = error.response.get("Item")
    return item if isinstance(item, dict) else {}


def is_condition_failure(error: ClientError) -> bool:
    return _error_code(error) == "ConditionalCheckFailedException"


def refused_by_dynamodb(outcome: Outcome, why: str) -> Outcome:
    """The REJECTED outcome stored instead of one DynamoDB refused for its content."""
    if outcome.status == REJECTED and outcome.result is None:
        # Already the smallest item this record can have: the refusal is not about the record's content.
        raise RuntimeError(f"DynamoDB refused the REJECTED record {outcome.record_id}: {why}")
    return Outcome(
        outcome.record_id, REJECTED, outcome.type, reason=readable(f"DynamoDB cannot store the result: {why}")
    )


# A replay id goes into every record item it replaces and into the batch item's `rc` set: short and plain.
REPLAY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _instant(text: str) -> bool:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


@dataclass(frozen=True)
class ReplayRequest:
    """What `rtp replay` asks of one raw request: run its records through the current transform again and
    replace their stored outcomes. Only records the request's own batch stored are replayed (an id another
    batch owns stays that batch's), and of those only the ones every filter set here matches."""

    replay_id: str  # one per `rtp replay` run: a record is replaced at most once per replay id
    status: str | None = None  # PROCESSED or REJECTED: only records stored with that status
    reason: str | None = None  # only REJECTED records whose reason contains this text
    processed_from: str | None = None  # only records processed at or after (ISO-8601 UTC, ms, Z)
    processed_to: str | None = None  # ... and before this

    def __post_init__(self) -> None:
        """Refuse what the processor could never apply (a message that would only cycle through retries and
        the dead-letter queue): checked where the message is built (`rtp replay`) and where it is read."""
        if not isinstance(self.replay_id, str) or not REPLAY_ID.fullmatch(self.replay_id):
            raise ValueError(f"replay id must be 1-64 of A-Z a-z 0-9 . _ -, not {self.replay_id!r}")
        if self.status not in (None, PROCESSED, REJECTED):
            raise ValueError(f"replay status must be {PROCESSED} or {REJECTED}, not {self.status!r}")
        if self.reason is not None and (not isinstance(self.reason, str) or not 0 < len(self.reason) <= 500):
            raise ValueError("replay reason must be a text of 1-500 characters")
        for name in ("processed_from", "processed_to"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not _instant(value)):
                raise ValueError(f"replay {name} must be an ISO-8601 time with a zone, not {value!r}")

    def to_dict(self) -> dict[str, str]:
        fields = {
            "id": self.replay_id,
            "status": self.status,
            "reason": self.reason,
            "processedFrom": self.processed_from,
            "processedTo": self.processed_to,
        }
        return {name: value for name, value in fields.items() if value is not None}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> ReplayRequest:
        return cls(
            replay_id=value["id"],
            status=value.get("status"),
            reason=value.get("reason"),
            processed_from=value.get("processedFrom"),
            processed_to=value.get("processedTo"),
        )


@dataclass(frozen=True)
class ClaimCheck:
    """The SQS message: a pointer to the raw request in S3, never the payload itself. `replay` is set on
    the messages `rtp replay` sends to the replay queue. `by_record`: the batch keeps no counters
    (`counted_by_record`; set by ingest, copied from the batch item's `byRecord` when a claim check is
    rebuilt, absent on claim checks of batches created before it existed, which keep counting). `resent`:
    ingest sent this batch's claim check again (an idempotent retry of a batch not settled yet), so it may
    find records stored by an earlier message although SQS counts its first receive."""

    batch_id: str
    bucket: str
    key: str
    correlation_id: str
    received_at: str
    record_count: int
    replay: ReplayRequest | None = None
    by_record: bool = False
    resent: bool = False

    def to_json(self) -> str:
        message: dict[str, Any] = {
            "batchId": self.batch_id,
            "bucket": self.bucket,
            "key": self.key,
            "correlationId": self.correlation_id,
            "receivedAt": self.received_at,
            "recordCount": self.record_count,
        }
        if self.replay is not None:
            message["replay"] = self.replay.to_dict()
        if self.by_record:
            message["byRecord"] = True
        if self.resent:
            message["resent"] = True
        return json.dumps(message, separators=(",", ":"))

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
            replay=ReplayRequest.from_dict(message["replay"]) if "replay" in message else None,
            by_record=message.get("byRecord") is True,
            resent=message.get("resent") is True,
        )


@dataclass(frozen=True)
class Stored:
    """What the table holds for one record id: the batch that stored it and its status."""

    batch_id: str
    status: str


@dataclass(frozen=True)
class ChunkWrite:
    stored: list[Outcome]  # stored by this call
    settled: dict[str, Stored]  # every record of the chunk seen: known before, stored now, found stored


@dataclass(frozen=True)
class ReplayMark:
    """What a replayed record's item says about its replay: `rp` the replay id, `ps` the status the batch
    counters hold for it (its status before, unless an uncounted mark of another replay was there: then
    that mark's `ps`), `ra` when it was replayed. `expires_at`: the item's `expiresAt`, kept."""

    replay_id: str
    previous: str  # PROCESSED or REJECTED
    expires_at: int = 0


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

    def put(self, key: str, body: bytes, correlation_id: str, exclusive: bool = False) -> bool:
        """Store a raw body. `exclusive`: only if no object has that key yet (If-None-Match: *), for names
        two requests can share (a keyed batch id: same key, same millisecond); False if one has. S3 answers
        412 Precondition Failed when the key exists and 409 ConditionalRequestConflict when another write
        of it is in flight: https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html"""
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                Metadata={"correlation-id": correlation_id},
                **({"IfNoneMatch": "*"} if exclusive else {}),
            )
        except ClientError as error:
            if exclusive and _error_code(error) in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def get(self, bucket: str, key: str) -> bytes:
        data: bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return data


class ClaimCheckQueue:
    def __init__(self, sqs: Any, queue_url: str) -> None:
        self.sqs, self.queue_url = sqs, queue_url

    def send(self, claim: ClaimCheck) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=claim.to_json())


class PipelineTable:
    def __init__(
        self, dynamodb: Any, table_name: str, compress: bool = True, transform_version: str = ""
    ) -> None:
        self.db, self.name, self.compress = dynamodb, table_name, compress
        self.transform_version = transform_version  # written on every record item (`v`)

    # --- ingest (idempotency keys: rtp_pipeline.idempotency) ---------------------------------
    def create_batch(
        self,
        claim: ClaimCheck,
        ids: Sequence[str],
        expires: datetime,
        now: datetime,
        request_hash: str | None = None,
    ) -> dict[str, Any] | None:
        """Write the batch item, once: None when this call wrote it, else the item already there (as
        DynamoDB returned it with the refusal, deserialized). Under a keyed batch id
        (rtp_pipeline.idempotency) the item is the Idempotency-Key's claim, with the request's hash; an
        item past its `expiresAt` that TTL has not deleted yet counts as gone (TTL deletes lag, and expired
        items still read: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ttl-expired-items.html)."""
        item: dict[str, Any] = {
            "pk": batch_pk(claim.batch_id),
            "batchId": claim.batch_id,
            "accepted": len(ids),
            "processed": 0,
            "rejected": 0,
            "duplicates": 0,
            "rawKey": claim.key,
            "correlationId": claim.correlation_id,
            "receivedAt": claim.received_at,
            "expiresAt": epoch_seconds(expires),
        }
        if claim.by_record:
            item["byRecord"] = True
        if request_hash is not None:
            item["requestHash"] = request_hash
        # Ids the processor derives (`<batchId>-<index>`) are not stored; ids a client chose are kept apart
        # from the batch item, whose size every counter update pays (`put_ids`, once the batch is this one's).
        client_ids = list(ids) != derived_ids(claim.batch_id, len(ids))
        if client_ids:
            item["clientIds"] = True
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
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            stored: Any = error.response.get("Item")
            if not isinstance(stored, dict):  # not returned: read it
                stored = self.db.get_item(
                    TableName=self.name, Key={"pk": {"S": item["pk"]}}, ConsistentRead=True
                )["Item"]
            return deserialize(stored)
        if client_ids:
            self.put_ids(claim.batch_id, ids, expires)
        return None

    def put_ids(self, batch_id: str, ids: Sequence[str], expires: datetime) -> None:
        """The ids of a batch whose client named some records (`IDS#<batchId>`); the same content whenever
        it is written again (a retry finishing a request that died between its batch item and this)."""
        ids_item = {"pk": f"IDS#{batch_id}", "ids": "\n".join(ids), "expiresAt": epoch_seconds(expires)}
        self.db.put_item(TableName=self.name, Item=serialize(ids_item))

    # --- processing -----------------------------------------------------------------------------
    def stored_records(self, record_ids: Sequence[str]) -> dict[str, Stored]:
        """Which of these record ids are already stored: {record id: (owning batch, status)}.

        BatchGetItem, 100 keys per call, strongly consistent: an item a leased chunk wrote may be overwritten
        by a later delivery's BatchWriteItem, and an eventually consistent read could return the older
        version, which would then be counted while the table holds the newer one
        (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.ReadConsistency.html).
        Keys DynamoDB leaves unprocessed are asked for again, briefly, then simply not reported."""
        return {
            record_id: _stored(item) for record_id, item in self._record_items(record_ids, ("b", "s")).items()
        }

    def _record_items(self, record_ids: Sequence[str], names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{record id: its item's attributes `names` (as attribute values)} for the ids stored, strongly
        consistent (see `stored_records`), 100 keys per BatchGetItem."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(record_ids))
        placeholders = {f"#a{n}": name for n, name in enumerate(("pk", *names))}
        for start in range(0, len(unique), BATCH_GET_KEYS):
            keys = [{"pk": {"S": f"REC#{record_id}"}} for record_id in unique[start : start + BATCH_GET_KEYS]]
            request: dict[str, Any] = {
                self.name: {
                    "Keys": keys,
                    "ProjectionExpression": ", ".join(placeholders),
                    "ConsistentRead": True,
                    "ExpressionAttributeNames": placeholders,
                }
            }
            for attempt in range(3):
                if attempt:
                    time.sleep(_backoff(attempt - 1))
                answer = self.db.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.name, []):
                    found[item["pk"]["S"][4:]] = item
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
        return found

    def counted_chunks(self, batch_id: str) -> set[int]:
        """The chunks of this batch already counted (strongly consistent: a redelivery skips them)."""
        found = self.db.get_item(
            TableName=self.name,
            Key={"pk": {"S": batch_pk(batch_id)}},
            ProjectionExpression="#c, batchId",
            ExpressionAttributeNames={"#c": "cc"},
            ConsistentRead=True,
        ).get("Item", {})
        if not _names_batch(found, batch_id):  # gone (its key now another batch's): the count will say so
            return set()
        return {int(number) for number in found.get("cc", {}).get("NS", [])}

    def lease_chunk(self, batch_id: str, chunk: int, now: datetime, until: datetime) -> int | str:
        """Give chunk number `chunk` to this delivery until `until`: returns the lease token, or "counted"
        (another delivery counted it: nothing left to do) or "busy" (another live delivery holds it)."""
        return self._lease(batch_id, f"l{chunk}", "cc", {"N": str(chunk)}, now, until)[0]

    def lease_chunks(
        self, batch_id: str, chunks: Sequence[int], now: datetime, until: datetime
    ) -> int | None:
        """`lease_chunk` for a run of chunks at once (a first delivery's: one UpdateItem instead of one per
        chunk): every one of them gets the same token if none is counted or held by a live lease; None if
        any is (the caller then leases them one at a time, which tells counted from busy)."""
        # The token's random tail makes it this call's own: an SDK retry of an update that succeeded (its
        # answer lost) finds every lease holding it in the item its refusal returns (ALL_OLD:
        # https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html), and is a
        # success, not a run locked against itself.
        token = int(until.timestamp() * 1_000_000) + random.randrange(1_000_000)
        names, values = {"#c": "cc"}, {":token": {"N": str(token)}, ":now": {"N": _micros(now)}}
        values[":batch"] = {"S": batch_id}
        free = []
        for n, chunk in enumerate(chunks):
            names[f"#l{n}"], values[f":m{n}"] = f"l{chunk}", {"N": str(chunk)}
            free.append(f"(attribute_not_exists(#l{n}) OR #l{n} < :now)")
        try:
            self.db.update_item(
                TableName=self.name,
                Key={"pk": {"S": batch_pk(batch_id)}},
                UpdateExpression="SET " + ", ".join(f"#l{n} = :token" for n in range(len(chunks))),
                ConditionExpression=" AND ".join([_THIS_BATCH, _lacks_all(len(chunks)), *free]),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            old = _item_returned(error)
            held = [old.get(f"l{chunk}", {}).get("N") for chunk in chunks]
            return token if _names_batch(old, batch_id) and held == [str(token)] * len(chunks) else None
        return token

    def release_chunks(self, batch_id: str, chunks: Sequence[int], lease: int) -> None:
        """Best effort: give a run's leases back in one update (one at a time if some lease is not this
        token's any more). Never raises: the leases run out on their own, and the caller's error is the one
        to report."""
        names = {f"#l{n}": f"l{chunk}" for n, chunk in enumerate(chunks)}
        try:
            self.db.update_item(
                TableName=self.name,
                Key={"pk": {"S": batch_pk(batch_id)}},
                UpdateExpression="REMOVE " + ", ".join(names),
                ConditionExpression=" AND ".join(f"{name} = :token" for name in names),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":token": {"N": str(lease)}},
            )
        except ClientError:
            for chunk in chunks:
                with contextlib.suppress(ClientError, BotoCoreError):
                    self.release_chunk(batch_id, chunk, lease)
        except BotoCoreError:
            return

    def _lease(
        self, batch_id: str, lease: str, done: str, member: dict[str, str], now: datetime, until: datetime
    ) -> tuple[int | str, dict[str, Any]]:
        """Set the batch item's attribute `lease` to a fresh token unless the set `done` holds `member`
        ("counted") or a live lease is there ("busy"). Also returns the set `done` as it is now (the
        update's ReturnValues: no read units)."""
        # The token is the lease's end in microseconds plus a random tail, so that two leases never match.
        token = int(until.timestamp() * 1_000_000) + random.randrange(1000)
        try:
            answer = self.db.update_item(
                TableName=self.name,
                Key={"pk": {"S": batch_pk(batch_id)}},
                UpdateExpression="SET #l = :token",
                ConditionExpression=f"{_THIS_BATCH} AND {_LACKS} AND {_LEASE_FREE}",
                ExpressionAttributeNames={"#l": lease, "#c": done},
                ExpressionAttributeValues={
                    ":token": {"N": str(token)},
                    ":m": member,
                    ":now": {"N": _micros(now)},
                    ":batch": {"S": batch_id},
                },
                # The item as updated comes back with the write, no read units; a failed condition returns the
                # item as it was (ALL_OLD): https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return token, answer.get("Attributes", {}).get(done, {})
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            old = _item_returned(error)
            if not _names_batch(old, batch_id):
                raise RuntimeError(f"batch {batch_id} has no batch item to count its records on") from error
            return ("counted" if _set_holds(old.get(done, {}), member) else "busy"), old.get(done, {})

    def release_chunk(self, batch_id: str, chunk: int, lease: int, replay: bool = False) -> None:
        """Best effort: give a chunk's lease (a replay's with `replay`) back early: this delivery stops
        without counting the chunk."""
        # On failure the lease runs out on its own; the original error is what the caller reports.
        with contextlib.suppress(ClientError):
            self.db.update_item(
                TableName=self.name,
                Key={"pk": {"S": batch_pk(batch_id)}},
                UpdateExpression="REMOVE #l",
                ConditionExpression="#l = :token",
                ExpressionAttributeNames={"#l": f"{'rl' if replay else 'l'}{chunk}"},
                ExpressionAttributeValues={":token": {"N": str(lease)}},
            )

    def store_outcomes(
        self, batch_id: str, outcomes: Sequence[Outcome], expires: datetime, now: datetime
    ) -> list[Outcome]:
        """Store a whole batch's outcomes (in request order) and count them: `store_chunk` per chunk."""
        stored: list[Outcome] = []
        for chunk, start in enumerate(range(0, len(outcomes), CHUNK_RECORDS)):
            part = outcomes[start : start + CHUNK_RECORDS]
            stored.extend(self.store_chunk(batch_id, chunk, part, {}, True, expires, now).stored)
        return stored

    def store_chunk(
        self,
        batch_id: str,
        chunk: int,
        outcomes: Sequence[Outcome],
        known: Mapping[str, Stored],
        complete: bool,
        expires: datetime,
        now: datetime,
        lease: int | None = None,
        count: bool = True,
    ) -> ChunkWrite:
        """Write `outcomes` (records of chunk number `chunk` not known to be stored), then, if `complete`
        (`known` and `outcomes` together are every record of the chunk), count the chunk on the batch once
        (not with `count` False: a batch `counted_by_record`, whose record item is its count).
        With a `lease` (from `lease_chunk`), records this batch owns (`owned_by`) are written with
        BatchWriteItem and only the lease's holder counts; client-named ids are always conditional writes
        (`_put_records`).
        Returns the outcomes stored now, as stored (an outcome DynamoDB refused for its content comes back
        as the REJECTED one stored instead), and what the table holds for every record of the chunk seen.
        Anything else (throttling that outlasts the retries, a service error) raises, for SQS to redeliver.
        """
        settled = dict(known)
        stored: list[Outcome] = []
        batched: list[tuple[Outcome, dict[str, Any]]] = []
        singles: list[Outcome] = []
        for outcome in outcomes:
            if lease is not None and owned_by(outcome.record_id, batch_id):
                batched.append(self._storable(batch_id, outcome, expires, now))
            else:
                singles.append(outcome)
        put = self._put_records(batch_id, singles, expires, now)
        for outcome, existing in zip(singles, put, strict=True):
            if isinstance(existing, Stored):
                settled[outcome.record_id] = existing
            else:
                stored.append(existing)
                settled[outcome.record_id] = Stored(batch_id, existing.status)
        for start in range(0, len(batched), BATCH_WRITE_ITEMS):
            for record_id, result in self._batch_write(
                batch_id, batched[start : start + BATCH_WRITE_ITEMS], expires, now
            ):
                if isinstance(result, Stored):
                    settled[record_id] = result
                else:
                    stored.append(result)
                    settled[record_id] = Stored(batch_id, result.status)
        if complete and count:
            self.count_chunk(batch_id, chunk, settled.values(), lease)
        return ChunkWrite(stored, settled)

    def _storable(
        self,
        batch_id: str,
        outcome: Outcome,
        expires: datetime,
        now: datetime,
        mark: ReplayMark | None = None,
    ) -> tuple[Outcome, dict[str, Any]]:
        """The outcome and its item's attribute values, or its REJECTED stand-in if it cannot be built."""
        try:
            return outcome, self.record_attributes(batch_id, outcome, expires, now, mark)
        except (TypeError, ValueError, ArithmeticError) as error:  # DecimalException: ArithmeticError
            outcome = refused_by_dynamodb(outcome, f"{type(error).__name__}: {error}")
            return outcome, self.record_attributes(batch_id, outcome, expires, now, mark)

    def _batch_write(
        self,
        batch_id: str,
        group: Sequence[tuple[Outcome, dict[str, Any]]],
        expires: datetime,
        now: datetime,
        sleep: Callable[[float], None] = time.sleep,
        single: Callable[[Outcome], Outcome | Stored] | None = None,
    ) -> list[tuple[str, Outcome | Stored]]:
        """One BatchWriteItem of at most 25 records this batch owns, under the chunk's lease. Items DynamoDB
        leaves unprocessed (throttling) are sent again with backoff; a call DynamoDB refuses as a whole for
        an item's content is redone one conditional put per record (`single`, by default `_put_record`), so
        that only that record is refused.
        https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html"""
        request: dict[str, Any] = {self.name: [{"PutRequest": {"Item": item}} for _, item in group]}
        try:
            for attempt in range(BATCH_WRITE_ATTEMPTS):
                if attempt:
                    sleep(_backoff(attempt - 1))
                request = self.db.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
                if not request:
                    return [(outcome.record_id, outcome) for outcome, _ in group]
        except ParamValidationError:
            pass
        except ClientError as error:
            if _error_code(error) not in _ITEM_REFUSED:
                raise
        else:
            left = len(request.get(self.name, []))
            raise RuntimeError(f"DynamoDB left {left} record(s) of batch {batch_id} unwritten (throttled)")
        # Under the lease only this delivery writes these ids: a put refused by its condition found the item
        # an earlier, crashed delivery of this message stored.
        put = single or functools.partial(self._put_record, batch_id, expires=expires, now=now)
        return [(outcome.record_id, put(outcome)) for outcome, _ in group]

    def _put_records(
        self, batch_id: str, outcomes: Sequence[Outcome], expires: datetime, now: datetime
    ) -> list[Outcome | Stored]:
        """Records written with `attribute_not_exists(pk)` semantics (a client named them, or too few for a
        lease), in request order: PartiQL INSERTs, `BATCH_WRITE_ITEMS` to a BatchExecuteStatement. Each is
        a conditional write at a plain write's units (1 per KB of item:
        https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html), where
        BatchWriteItem takes no condition and TransactWriteItems costs double. An INSERT refused as a
        duplicate, or for its content, is redone as `_put_record`, whose refused condition returns the
        stored item (first writer wins, as before). One record alone is that PutItem at once."""
        if len(outcomes) <= 1:
            return [self._put_record(batch_id, outcome, expires, now) for outcome in outcomes]
        results: list[Outcome | Stored | None] = [None] * len(outcomes)
        redo: list[int] = []
        for start in range(0, len(outcomes), BATCH_WRITE_ITEMS):
            group = [
                (start + offset, *self._storable(batch_id, outcome, expires, now))
                for offset, outcome in enumerate(outcomes[start : start + BATCH_WRITE_ITEMS])
            ]
            for index, result in self._insert(batch_id, group):
                if result is None:
                    redo.append(index)
                else:
                    results[index] = result
        settled = self._put_each(batch_id, [outcomes[i] for i in redo], expires, now)
        for index, result in zip(redo, settled, strict=True):
            results[index] = result
        return [result for result in results if result is not None]

    def _insert(
        self,
        batch_id: str,
        group: Sequence[tuple[int, Outcome, dict[str, Any]]],
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[tuple[int, Outcome | Stored | None]]:
        """One BatchExecuteStatement of INSERTs; per record (index, the outcome stored, or what was stored
        under its id before, or None for `_put_record` to settle). A refused INSERT asks for the stored item
        (ReturnValuesOnConditionCheckFailure=ALL_OLD, "No read capacity units are consumed":
        https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchStatementRequest.html, and
        BatchStatementError.Item holds it); without it, or when DynamoDB refused the item's content, the
        record is None. Statements throttled or failed inside the service are sent again with backoff.
        "If the DynamoDB table already has an item with the same primary key as the primary key of the item
        being inserted, DuplicateItemException is returned":
        https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-reference.insert.html
        At most 25 statements a batch, each answered on its own (an HTTP 200 does not mean every statement
        succeeded): https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-reference.multiplestatements.batching.html
        https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchExecuteStatement.html"""
        done: list[tuple[int, Outcome | Stored | None]] = []
        pending = list(group)
        for attempt in range(BATCH_WRITE_ATTEMPTS):
            if attempt:
                sleep(_backoff(attempt - 1))
            try:
                answers = self.db.batch_execute_statement(
                    Statements=[insert_statement(self.name, item) for _, _, item in pending]
                )["Responses"]
            except ParamValidationError:
                return done + [(index, None) for index, _, _ in pending]
            except ClientError as error:
                if _error_code(error) not in _ITEM_REFUSED:
                    raise
                return done + [(index, None) for index, _, _ in pending]
            again = []
            for (index, outcome, item), answer in zip(pending, answers, strict=True):
                refusal = answer.get("Error") or {}
                code = str(refusal.get("Code", ""))
                if not code:
                    done.append((index, outcome))
                elif code in _NOT_INSERTED:
                    old = refusal.get("Item")
                    done.append((index, _stored(old) if isinstance(old, dict) and old else None))
                elif code in _TRY_AGAIN:
                    again.append((index, outcome, item))
                else:
                    message = refusal.get("Message", "")
                    raise RuntimeError(f"record {outcome.record_id} of batch {batch_id}: {code}: {message}")
            if not again:
                return done
            pending = again
        raise RuntimeError(
            f"DynamoDB left {len(pending)} record(s) of batch {batch_id} unwritten (throttled)"
        )

    def _put_each(
        self, batch_id: str, outcomes: Sequence[Outcome], expires: datetime, now: datetime
    ) -> list[Outcome | Stored]:
        """`_put_record` for each, `PUT_CONCURRENCY` at a time: each put waits on the network, not the CPU
        (500 puts one after another would take 500 round trips). boto3 clients are thread-safe:
        https://boto3.amazonaws.com/v1/documentation/api/latest/guide/clients.html#multithreading-or-multiprocessing-with-clients"""
        if len(outcomes) <= 1:
            return [self._put_record(batch_id, outcome, expires, now) for outcome in outcomes]
        put = functools.partial(self._put_record, batch_id, expires=expires, now=now)
        futures = [_put_pool().submit(put, outcome) for outcome in outcomes]
        # Every put finishes (or fails) before this returns: none is left running into the next invocation.
        wait(futures)
        return [future.result() for future in futures]  # the first failure, in request order, raises

    def _put_record(
        self, batch_id: str, outcome: Outcome, expires: datetime, now: datetime
    ) -> Outcome | Stored:
        """One conditional put. Returns the outcome stored, or what was stored under its id before."""

        def put(item: dict[str, Any], record_id: str) -> Stored | None:
            try:
                # ALL_OLD on a failed condition returns the stored item at no read cost:
                # https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_PutItem.html
                self.db.put_item(
                    TableName=self.name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk)",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return None
            except ClientError as error:
                if not is_condition_failure(error):
                    raise
                old: Any = error.response.get("Item")
                if not isinstance(old, dict) or not old:
                    raise RuntimeError(f"record {record_id}: stored, but DynamoDB did not say how") from error
                return _stored(old)

        return self._put_or_stand_in(batch_id, outcome, expires, now, None, put)

    def _put_or_stand_in(
        self,
        batch_id: str,
        outcome: Outcome,
        expires: datetime,
        now: datetime,
        mark: ReplayMark | None,
        put: Callable[[dict[str, Any], str], Stored | None],
    ) -> Outcome | Stored:
        """`put(item, record id)` the outcome's item; if DynamoDB (or botocore) refuses its content, its
        REJECTED stand-in instead. Returns the outcome stored, or what `put` found stored before."""
        for _ in range(2):  # the outcome, then (if DynamoDB refuses its content) its REJECTED stand-in
            try:
                item = self.record_attributes(batch_id, outcome, expires, now, mark)
            except (TypeError, ValueError, ArithmeticError) as error:  # DecimalException: ArithmeticError
                outcome = refused_by_dynamodb(outcome, f"{type(error).__name__}: {error}")
                continue
            try:
                found = put(item, outcome.record_id)
                return outcome if found is None else found
            except ParamValidationError as error:
                outcome = refused_by_dynamodb(outcome, str(error))
            except ClientError as error:
                if _error_code(error) not in _ITEM_REFUSED:
                    raise
                outcome = refused_by_dynamodb(outcome, error.response.get("Error", {}).get("Message", ""))
        raise RuntimeError(f"record {outcome.record_id}: DynamoDB refused its REJECTED stand-in")

    def count_chunk(
        self, batch_id: str, chunk: int, settled: Iterable[Stored], lease: int | None = None
    ) -> bool:
        """Add one settled chunk's counts to the batch, once: the update is conditioned on the chunk's
        number not being in the batch's set of counted chunks (and, with a lease, on holding it), and adds
        it. False if counted before; raises if the lease was lost (the message is then redelivered)."""
        counts = _chunk_counts(batch_id, settled)
        return self._count(batch_id, counts, "cc", {"N": str(chunk)}, f"l{chunk}", lease)

    def count_chunks(
        self, batch_id: str, settled: Mapping[int, Iterable[Stored]], lease: int, leased: Sequence[int]
    ) -> bool:
        """`count_chunk` for the settled chunks of a run leased with `lease_chunks`, in one UpdateItem that
        also gives back the run's other leases (`leased`: the chunks not settled stay uncounted). False if
        another delivery counted them all (after this one's lease ran out); raises if the lease was lost."""
        counts = _chunk_counts(batch_id, itertools.chain.from_iterable(settled.values()))
        names = {f"#n{n}": name for n, name in enumerate(counts)}
        values: dict[str, Any] = {f":n{n}": {"N": str(value)} for n, value in enumerate(counts.values())}
        names["#c"], values[":c"] = "cc", {"NS": [str(chunk) for chunk in settled]}
        values[":batch"], values[":token"] = {"S": batch_id}, {"N": str(lease)}
        for n, chunk in enumerate(settled):
            values[f":m{n}"] = {"N": str(chunk)}
        for n, chunk in enumerate(leased):
            names[f"#l{n}"] = f"l{chunk}"
        held = " AND ".join(f"#l{n} = :token" for n in range(len(leased)))
        adds = ", ".join([*(f"#n{n} :n{n}" for n in range(len(counts))), "#c :c"])
        removes = ", ".join(f"#l{n}" for n in range(len(leased)))
        return self._conditional_count(
            batch_id,
            f"ADD {adds} REMOVE {removes}",
            f"{_THIS_BATCH} AND {_lacks_all(len(settled))} AND {held}",
            names,
            values,
            lambda old: all(_set_holds(old.get("cc", {}), {"N": str(chunk)}) for chunk in settled),
            f"batch {batch_id}: the lease of chunks {list(leased)} ran out",
        )

    # --- replay (`rtp replay`: records run again through the current transform) ----------------------
    def batch_progress(self, batch_id: str, now: datetime) -> tuple[set[int], set[str]] | None:
        """(counted chunks `cc`, replay tags `rc`) of a batch, strongly consistent; None when the batch
        item is gone or past its `expiresAt` (TTL deletes lag, and expired items still read:
        https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ttl-expired-items.html)."""
        found = self.db.get_item(
            TableName=self.name,
            Key={"pk": {"S": batch_pk(batch_id)}},
            ProjectionExpression="#c, #r, #e, batchId",
            ExpressionAttributeNames={"#c": "cc", "#r": "rc", "#e": "expiresAt"},
            ConsistentRead=True,
        ).get("Item")
        if found is None or not _names_batch(found, batch_id):
            return None
        if int(found.get("expiresAt", {}).get("N", "0") or 0) <= epoch_seconds(now):
            return None
        counted = {int(number) for number in found.get("cc", {}).get("NS", [])}
        return counted, set(found.get("rc", {}).get("SS", []))

    def lease_replay_chunk(
        self, batch_id: str, chunk: int, replay_id: str, now: datetime, until: datetime
    ) -> tuple[int | str, set[str]]:
        """`lease_chunk` for a replay: the chunk's replay lease `rl<chunk>` (one replay at a time per
        chunk), "counted" once `rc` holds `replay_tag(replay_id, chunk)`. Also returns `rc` as it is."""
        held, tags = self._lease(
            batch_id, f"rl{chunk}", "rc", {"S": replay_tag(replay_id, chunk)}, now, until
        )
        return held, set(tags.get("SS", []))

    def replay_candidates(self, record_ids: Sequence[str]) -> dict[str, ReplayView]:
        """What a replay needs of each stored record item (strongly consistent). Items of the layout before
        this one (no `b`) are left out: a replay does not touch them."""
        items = self._record_items(record_ids, ("b", "s", "at", "e", "rp", "ps", "expiresAt"))
        return {record_id: _replay_view(item) for record_id, item in items.items() if "b" in item}

    def replace_records(
        self, batch_id: str, outcomes: Sequence[tuple[Outcome, ReplayMark]], now: datetime
    ) -> list[Outcome]:
        """Replace records' items with their replayed outcomes (under the chunk's replay lease, so one
        writer): one PutItem each, `PUT_CONCURRENCY` at a time, conditioned on the item being this batch's.
        Returns the outcomes as stored (REJECTED stand-ins for results DynamoDB refuses). Each item keeps
        its `expiresAt` (the mark's): a replay never outlives the batch item its counters are on.
        Records this batch owns (`owned_by`: no other batch can write their ids) go in BatchWriteItem calls
        of 25, as first deliveries write them; records a client named are conditional puts."""
        replace = functools.partial(self._replace_record, batch_id, now=now)
        marks = {outcome.record_id: mark for outcome, mark in outcomes}
        owned = [pair for pair in outcomes if owned_by(pair[0].record_id, batch_id)]
        named = [pair for pair in outcomes if not owned_by(pair[0].record_id, batch_id)]
        stored: dict[str, Outcome] = {}
        if len(named) <= 1:
            stored.update((pair[0].record_id, replace(pair)) for pair in named)
        else:
            futures = [_put_pool().submit(replace, pair) for pair in named]
            wait(futures)
            stored.update(
                (pair[0].record_id, future.result()) for pair, future in zip(named, futures, strict=True)
            )
        single = lambda outcome: replace((outcome, marks[outcome.record_id]))  # noqa: E731
        for start in range(0, len(owned), BATCH_WRITE_ITEMS):
            group = [
                self._storable(batch_id, outcome, datetime.fromtimestamp(mark.expires_at, UTC), now, mark)
                for outcome, mark in owned[start : start + BATCH_WRITE_ITEMS]
            ]
            for record_id, result in self._batch_write(batch_id, group, now, now, single=single):
                assert isinstance(result, Outcome)  # `single` always stores (or raises)
                stored[record_id] = result
        # Stand-ins keep their record's id: the order of `outcomes`, as stored.
        return [stored[outcome.record_id] for outcome, _ in outcomes]

    def _replace_record(self, batch_id: str, pair: tuple[Outcome, ReplayMark], now: datetime) -> Outcome:
        outcome, mark = pair

        def put(item: dict[str, Any], _: str) -> None:
            # A failed condition raises: the item is not this batch's (never replayed here).
            self.db.put_item(
                TableName=self.name,
                Item=item,
                ConditionExpression="#b = :b",
                ExpressionAttributeNames={"#b": "b"},
                ExpressionAttributeValues={":b": {"S": batch_id}},
            )

        stored = self._put_or_stand_in(
            batch_id, outcome, datetime.fromtimestamp(mark.expires_at, UTC), now, mark, put
        )
        assert isinstance(stored, Outcome)  # `put` never reports an item stored before
        return stored

    def count_replay_chunk(
        self,
        batch_id: str,
        chunk: int,
        replay_id: str,
        replayed: Iterable[ReplayView],
        lease: int | None,
        also: Iterable[str] = (),
        count: bool = True,
    ) -> bool:
        """Move the batch counters by what replays changed in one chunk (every record of `replayed` carries
        a mark not counted yet: its status now and the status the counters hold for it), once: conditioned
        on the chunk's replay tag not being in `rc` (and on holding the replay lease), and adds it, with the
        tags `also` (other replays' whose marks in this chunk are counted here). False if counted before."""
        processed = rejected = 0
        for view in replayed:
            processed += (view.status == PROCESSED) - (view.previous == PROCESSED)
            rejected += (view.status == REJECTED) - (view.previous == REJECTED)
        # A batch counted by its record (`count` False) has no counters to move: only the tag is added.
        counts = {"processed": processed, "rejected": rejected} if count else {}
        tag = {"S": replay_tag(replay_id, chunk)}
        return self._count(batch_id, counts, "rc", tag, f"rl{chunk}", lease, sorted(set(also)))

    def _count(
        self,
        batch_id: str,
        counts: Mapping[str, int],
        done: str,
        member: dict[str, str],
        lease_name: str,
        lease: int | None,
        also: Sequence[str] = (),
    ) -> bool:
        """ADD `counts` to the batch item's counters and `member` (and the strings `also`) to its set
        `done`, conditioned on the set not holding `member` yet (and, with a lease, on holding the lease
        `lease_name`, which is removed). False if counted before; raises if the lease was lost (the message
        is then redelivered)."""
        # `processed` is a DynamoDB reserved word: every name goes through a placeholder.
        names = {f"#n{n}": name for n, name in enumerate(counts)}
        values: dict[str, Any] = {f":n{n}": {"N": str(value)} for n, value in enumerate(counts.values())}
        adds = "".join(f"#n{n} :n{n}, " for n in range(len(counts)))  # none: only the tag (by record)
        [(kind, value)] = member.items()
        names["#c"], values[":c"], values[":m"] = done, {f"{kind}S": [value, *also]}, member
        # _THIS_BATCH: an update on a missing key would create a new item holding only counters (a batch item
        # expired with its TTL while its message was still being redelivered), and a keyed batch's item may
        # hold another batch by now (its key reused once this one expired).
        update, condition = f"ADD {adds}#c :c", f"{_THIS_BATCH} AND {_LACKS}"
        values[":batch"] = {"S": batch_id}
        if lease is not None:
            names["#l"], values[":token"] = lease_name, {"N": str(lease)}
            update, condition = update + " REMOVE #l", condition + " AND #l = :token"
        return self._conditional_count(
            batch_id,
            update,
            condition,
            names,
            values,
            None if lease is None else (lambda old: _set_holds(old.get(done, {}), member)),
            f"batch {batch_id}: the lease {lease_name} ran out before counting",
        )

    def _conditional_count(
        self,
        batch_id: str,
        update: str,
        condition: str,
        names: Mapping[str, str],
        values: Mapping[str, Any],
        counted_before: Callable[[Mapping[str, Any]], bool] | None,
        lost: str,
    ) -> bool:
        """One counting UpdateItem on the batch item. True if it counted; False if its condition found the
        count made already; raises when the batch item is gone (or another batch's), or when
        `counted_before` (given for a count under a lease) says the refused item does not hold the count:
        the lease ran out (`lost`), and the message must be redelivered."""
        try:
            self.db.update_item(
                TableName=self.name,
                Key={"pk": {"S": batch_pk(batch_id)}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return True
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            old = _item_returned(error)
            if not _names_batch(old, batch_id):
                raise RuntimeError(f"batch {batch_id} has no batch item to count its records on") from error
            if counted_before is not None and not counted_before(old):
                raise RuntimeError(lost) from error
            return False

    @staticmethod
    def record_item(
        batch_id: str,
        outcome: Outcome,
        expires: datetime,
        now: datetime,
        version: str = "",
        replay: ReplayMark | None = None,
    ) -> dict[str, Any]:
        """The record's item as plain values, result uncompressed: what the storable checks look at.
        `version`: the transform's (`v`); `replay`: set when a replay replaces the record's outcome."""
        item: dict[str, Any] = {
            "pk": f"REC#{outcome.record_id}",
            "b": batch_id,
            "s": _STATUS_CODES[outcome.status],
            "t": readable(outcome.type, 200),
            "at": _iso_millis(now),
            "expiresAt": epoch_seconds(expires),
        }
        if version:
            item["v"] = version
        if replay is not None:
            item["rp"], item["ps"], item["ra"] = replay.replay_id, _STATUS_CODES[replay.previous], item["at"]
        if outcome.status == REJECTED:
            item["rk"], item["rs"] = rejected_index_keys(outcome.record_id, item["at"])
        if outcome.result is not None:
            item["r"] = outcome.result
        if outcome.reason is not None:
            item["e"] = readable(outcome.reason)
        return item

    def record_attributes(
        self,
        batch_id: str,
        outcome: Outcome,
        expires: datetime,
        now: datetime,
        replay: ReplayMark | None = None,
    ) -> dict[str, Any]:
        """The record's item as DynamoDB attribute values, its result compressed when that pays."""
        item = self.record_item(batch_id, outcome, expires, now, self.transform_version, replay)
        result = item.pop("r", None)
        attributes: dict[str, Any] = {
            "pk": {"S": item["pk"]},
            "b": {"S": batch_id},
            "s": {"S": item["s"]},
            "t": {"S": item["t"]},
            "at": {"S": item["at"]},
            "expiresAt": {"N": str(item["expiresAt"])},
        }
        for name in ("e", "rk", "rs", "v", "rp", "ps", "ra"):
            if name in item:
                attributes[name] = {"S": item[name]}
        if result is not None:
            packed = compress_result(result) if self.compress else None
            attributes.update(
                {"z": {"B": packed}}
                if packed is not None
                else {"r": _serializer.serialize(to_dynamo(result))}
            )
        return attributes

    def record_failure(self, batch_id: str, error: str) -> None:
        """Best effort: note the last processing error on the batch, for `rtp dlq peek` and the status API."""
        # The original failure matters (it is logged and the message redelivered): ignore this one.
        with contextlib.suppress(ClientError):
            self.db.update_item(
                TableName=self.name,
                Key={"pk": {"S": batch_pk(batch_id)}},
                UpdateExpression="SET lastError = :e",
                ConditionExpression=_THIS_BATCH,
                ExpressionAttributeValues={":e": {"S": error[:1000]}, ":batch": {"S": batch_id}},
            )

    # --- queries --------------------------------------------------------------------------------
    def get_record(self, record_id: str) -> dict[str, Any] | None:
        """The record with its long attribute names (`long_named_record`)."""
        item = self._get(f"REC#{record_id}")
        return None if item is None else long_named_record(record_id, item)

    def get_batch(self, batch_id: str, consistent: bool = False) -> dict[str, Any] | None:
        """The batch item, with `ids`: the clients' (IDS item) or the derived ones. The counters of a batch
        `counted_by_record` come from its record item (`counts_of_record`)."""
        batch = self._get(batch_pk(batch_id), consistent)
        if batch is None or "ids" in batch:
            return batch
        if batch.get("batchId", batch_id) != batch_id:  # a keyed retry's id: the key's batch is another
            return None
        if batch.get("byRecord"):
            [record_id] = derived_ids(batch_id, 1)
            record = self._get(f"REC#{record_id}", consistent)
            held = None
            if record is not None and "b" in record:
                held = Stored(str(record["b"]), _STATUS_NAMES.get(str(record.get("s")), ""))
            batch.update(counts_of_record(batch_id, held))
        ids_item = self._get(f"IDS#{batch_id}") if batch.get("clientIds") else None
        batch["ids"] = (
            str(ids_item["ids"]).split("\n")
            if ids_item
            else derived_ids(batch_id, int(batch.get("accepted", 0)))
        )
        return batch

    def batch_settled(self, batch_id: str) -> bool:
        """Whether every accepted record of the batch is counted (strongly consistent: the counters, and for
        a `byRecord` batch its record item); False while the batch item is not written yet."""
        found = self.db.get_item(
            TableName=self.name,
            Key={"pk": {"S": batch_pk(batch_id)}},
            ProjectionExpression="accepted, #p, rejected, duplicates, byRecord",
            ExpressionAttributeNames={"#p": "processed"},  # a reserved word
            ConsistentRead=True,
        ).get("Item")
        if found is None:
            return False
        batch = deserialize(found)
        if batch.get("byRecord"):  # settled once its own record is stored (ingest's role: GetItem only)
            [record_id] = derived_ids(batch_id, 1)
            record = self.db.get_item(
                TableName=self.name,
                Key={"pk": {"S": f"REC#{record_id}"}},
                ProjectionExpression="pk",
                ConsistentRead=True,
            )
            return "Item" in record
        done = sum(int(batch.get(name, 0)) for name in ("processed", "rejected", "duplicates"))
        return done >= int(batch.get("accepted", 0))

    def _get(self, pk: str, consistent: bool = False) -> dict[str, Any] | None:
        found = self.db.get_item(TableName=self.name, Key={"pk": {"S": pk}}, ConsistentRead=consistent)
        return deserialize(found["Item"]) if "Item" in found else None


def long_named_record(record_id: str, item: Mapping[str, Any]) -> dict[str, Any]:
    """A stored record item with its long attribute names: recordId, batchId, status, type, processedAt,
    expiresAt, and result or reason (what GET /records/{id} answers)."""
    if "b" not in item:  # written by the layout before this one: already long names
        return {key: value for key, value in item.items() if key not in {"gsi1pk", "gsi1sk"}}
    view: dict[str, Any] = {
        "recordId": record_id,
        "batchId": item["b"],
        "status": _STATUS_NAMES.get(item["s"], item["s"]),
        "type": item.get("t", ""),
        "processedAt": item.get("at"),
        "expiresAt": item.get("expiresAt"),
    }
    if "z" in item:
        view["result"] = decompress_result(item["z"])
    elif "r" in item:
        view["result"] = item["r"]
    if "e" in item:
        view["reason"] = item["e"]
    for name, long_name in (("v", "transformVersion"), ("ra", "replayedAt"), ("rp", "replayId")):
        if name in item:
            view[long_name] = item[name]
    if "ps" in item:
        view["previousStatus"] = _STATUS_NAMES.get(item["ps"], item["ps"])
    return view


# The sparse index of REJECTED records (`rejected`: partition key `rk`, sort key `rs`; PROCESSED items
# carry neither attribute, so they never reach the index). A bad transform can reject every record: at
# 10,000 records/s one index key per hour would take 10,000 writes/s on one index partition, and a
# partition serves at most 1,000 write units per second
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html), with
# index throttling pushing back on the table's writes
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.ThroughputConsiderations).
# Spread by crc32(record id) over 16 shards per hour: 10,000 / 16 = 625 writes/s per index key at most
# (one write unit each: the index entry is well under 1 KB), below the 1,000.
REJECTED_INDEX = "rejected"
REJECTED_SHARDS = 16
DESIGN_RECORDS_PER_SECOND = 10_000
PARTITION_WRITE_UNITS_PER_SECOND = 1_000


def rejected_index_keys(record_id: str, processed_at: str) -> tuple[str, str]:
    """The REJECTED index's keys of one record: (`<yyyy-mm-ddThh>#<shard>`, `<processedAt>#<recordId>`).
    `processed_at` is the item's `at` (ISO-8601 UTC with milliseconds and Z): its hour is its first 13
    characters, and the sort key orders by time, then id (ids are unique: the order is total)."""
    shard = zlib.crc32(record_id.encode("utf-8", "surrogatepass")) % REJECTED_SHARDS
    return f"{processed_at[:13]}#{shard:02d}", f"{processed_at}#{record_id}"


def insert_statement(table: str, item: Mapping[str, Any]) -> dict[str, Any]:
    """A PartiQL INSERT of one item given as attribute values: `INSERT INTO "t" VALUE {'pk': ?, ...}`, the
    values as parameters (never spliced into the text). Attribute names here are this module's own."""
    if not all(_PLAIN_NAME.fullmatch(name) for name in item):
        raise ValueError(f"attribute names must be plain to be spelled in a statement: {sorted(item)}")
    names = ", ".join(f"'{name}': ?" for name in item)
    return {
        "Statement": f'INSERT INTO "{table}" VALUE {{{names}}}',
        "Parameters": list(item.values()),
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def owned_by(record_id: str, batch_id: str) -> bool:
    """Whether `record_id` is one the API assigned in this batch (no other batch can hold it)."""
    index = record_id[len(batch_id) + 1 :]
    return record_id.startswith(f"{batch_id}-") and index.isascii() and index.isdigit()


def batch_pk(batch_id: str) -> str:
    """The batch item's key. A batch id an Idempotency-Key made (`KEYED_BATCH_ID`: 27 characters, `K` after
    the 10 time characters, then a hash of the key) is keyed by the key's part alone, so that every retry
    with the key, whenever it arrives, meets the same item (rtp_pipeline.idempotency)."""
    return "BATCH#" + (batch_id[10:] if KEYED_BATCH_ID.fullmatch(batch_id) else batch_id)


def counted_by_record(batch_id: str, ids: Sequence[str]) -> bool:
    """A batch of one record whose id the API assigned keeps no counters: its record item is its count.
    Only its own batch can write that id (`owned_by`), so the item's presence says the record is settled
    and its status says how: no counter update, one write unit less per request (the common shape of a
    producer sending records one by one). Flagged `byRecord` on the batch item."""
    return len(ids) == 1 and ids[0] == f"{batch_id}-0"


def counts_of_record(batch_id: str, held: Stored | None) -> dict[str, int]:
    """The counters of a batch `counted_by_record`, from what its record's item holds (None: not stored)."""
    status = held.status if held is not None and held.batch_id == batch_id else None
    return {"processed": int(status == PROCESSED), "rejected": int(status == REJECTED), "duplicates": 0}


def derived_ids(batch_id: str, count: int) -> list[str]:
    """The ids of records a client did not name: `<batchId>-<index>`."""
    return [f"{batch_id}-{index}" for index in range(count)]


def compress_result(result: dict[str, Any]) -> bytes | None:
    """zlib of the result's JSON, when it is long enough and that makes it smaller; else None."""
    try:
        text = json.dumps(result, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError):  # not JSON (a set, bytes...): stored as a map, as DynamoDB types allow
        return None
    if len(text) < COMPRESS_MIN_BYTES:
        return None
    packed = zlib.compress(text)
    return packed if len(packed) < len(text) else None


def decompress_result(packed: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(zlib.decompress(bytes(packed)))
    return value


def _stored(item: Mapping[str, Any]) -> Stored:
    """Owner and status from a record item's attribute values (this layout's, or the one before it)."""
    batch = item.get("b") or item.get("batchId") or {}
    status = item.get("s") or item.get("status") or {}
    code = str(status.get("S", ""))
    return Stored(str(batch.get("S", "")), _STATUS_NAMES.get(code, code))


@dataclass(frozen=True)
class ReplayView:
    """A stored record as a replay sees it: owner, status, when and why, and its last replay's mark."""

    batch_id: str
    status: str
    processed_at: str
    reason: str | None
    replay_id: str | None
    previous: str | None  # the status the counters hold for it while that replay's mark is uncounted
    expires_at: int = 0


def _replay_view(item: Mapping[str, Any]) -> ReplayView:
    stored = _stored(item)

    def text(name: str) -> str | None:
        value = item.get(name)
        return str(value["S"]) if value and "S" in value else None

    previous = text("ps")
    return ReplayView(
        stored.batch_id,
        stored.status,
        text("at") or "",
        text("e"),
        text("rp"),
        _STATUS_NAMES.get(previous, previous) if previous else None,
        int(item.get("expiresAt", {}).get("N", "0") or 0),
    )


# "The set `#c` does not hold `:m`", also true when the set is not there at all (said outright rather than
# left to how contains() treats a missing attribute); "no live lease `#l`".
_LACKS = "(attribute_not_exists(#c) OR NOT contains(#c, :m))"


def _lacks_all(members: int) -> str:
    """`_LACKS` for the members `:m0`..: the set `#c` holds none of them."""
    assert members > 0, "no members: an empty condition"
    lacking = " AND ".join(f"NOT contains(#c, :m{n})" for n in range(members))
    return f"(attribute_not_exists(#c) OR ({lacking}))"


def _chunk_counts(batch_id: str, settled: Iterable[Stored]) -> dict[str, int]:
    """A settled chunk's counts: its records stored by this batch, by status, and duplicates (owned by
    another batch)."""
    counts = {"processed": 0, "rejected": 0, "duplicates": 0}
    for record in settled:
        if record.batch_id != batch_id:
            counts["duplicates"] += 1
        elif record.status == PROCESSED:
            counts["processed"] += 1
        else:
            counts["rejected"] += 1
    return counts


def _micros(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1_000_000))


# The batch item is there and is this batch's (a keyed batch's item may hold a later batch of its key).
_THIS_BATCH = "batchId = :batch"


def _names_batch(item: Mapping[str, Any], batch_id: str) -> bool:
    """Whether a batch item (attribute values) is this batch's."""
    return bool(item) and item.get("batchId", {}).get("S") == batch_id


_LEASE_FREE = "(attribute_not_exists(#l) OR #l < :now)"


def replay_tag(replay_id: str, chunk: int) -> str:
    """The member of a batch's `rc` set saying this replay settled this chunk."""
    return f"{replay_id}:{chunk}"


def _set_holds(attribute: Mapping[str, Any], member: Mapping[str, str]) -> bool:
    """Whether a number or string set attribute value holds `member` ({"N": "3"} or {"S": "x"})."""
    [(kind, value)] = member.items()
    return value in attribute.get(f"{kind}S", [])


def _backoff(retry: int) -> float:
    """Full-jitter delay before sending unprocessed keys or items again (DynamoDB asks for backoff:
    https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html)."""
    return random.uniform(0.0, min(1.0, 0.05 * 2**retry))


@functools.cache
def _put_pool() -> ThreadPoolExecutor:
    """One pool per execution environment (a table object is made per message)."""
    return ThreadPoolExecutor(PUT_CONCURRENCY, thread_name_prefix="put")


@functools.lru_cache(maxsize=8)
def _iso_millis(moment: datetime) -> str:
    """`2026-11-28T12:00:00.000Z`: one string per processing time, not one per record."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ttl(now: datetime, days: int = 0, hours: int = 0) -> datetime:
    return now + timedelta(days=days, hours=hours)
