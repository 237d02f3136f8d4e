"""The bulk-load journal: what a killed `rtp send --file` run had already done, so `--resume` continues it.

One append-only JSON Lines file per (environment, input bytes, input options, batching limits), under
`.rtp/send-journals/`. Every entry is flushed and fsynced before the action it announces:

- `run`: the run id. Each batch's Idempotency-Key is `<runId>-<batch index>`, so it is fixed before the
  first request is sent; a batch resent after a kill carries the key of its first attempt and the API
  replays the first answer instead of accepting the records again.
- `sending`: written ahead of a batch's first attempt (its key and input lines).
- `accepted`: the API answered 202 (batch id, record count): never sent again by a resumed run.
- `done`: every batch was accepted.

A new journal's file is written with its first `sending` entry: a run that stops before sending anything
(bad input, a crash while reading) leaves no journal, so the next run does not ask for --resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class JournalError(RuntimeError):
    """An unfinished run exists and neither --resume nor --restart was given, or the journal is bad."""


def journal_key(env: str, file_sha256: str, options: dict[str, Any], limits: dict[str, int]) -> str:
    material = json.dumps(
        {"env": env, "sha256": file_sha256, "options": options, "limits": limits}, sort_keys=True
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


@dataclass
class Journal:
    path: Path
    run_id: str
    accepted: dict[int, dict[str, Any]] = field(default_factory=dict)
    sending: dict[int, str] = field(default_factory=dict)
    done: bool = False
    resumed: bool = False
    header: dict[str, Any] | None = None  # the `run` entry of a new journal, written with the first entry

    def idempotency_key(self, batch_index: int) -> str:
        return f"{self.run_id}-{batch_index:06d}"

    def _append(self, entry: dict[str, Any]) -> None:
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        entries = [{**entry, "at": at}]
        if self.header is not None:
            entries.insert(0, {**self.header, "at": at})
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries))
            handle.flush()
            os.fsync(handle.fileno())
        self.header = None

    def will_send(self, batch_index: int, lines: list[int]) -> str:
        key = self.idempotency_key(batch_index)
        if batch_index not in self.sending:
            self._append(
                {"kind": "sending", "batch": batch_index, "key": key, "lines": [lines[0], lines[-1]]}
            )
            self.sending[batch_index] = key
        return key

    def record_accepted(self, batch_index: int, batch_id: str, count: int) -> None:
        self._append({"kind": "accepted", "batch": batch_index, "batchId": batch_id, "count": count})
        self.accepted[batch_index] = {"batchId": batch_id, "count": count}

    def finish(self) -> None:
        self._append({"kind": "done"})
        self.done = True

    @classmethod
    def open(cls, directory: Path, key: str, meta: dict[str, Any], resume: bool, restart: bool) -> Journal:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{key}.jsonl"
        if path.is_file() and not restart:
            earlier = cls._load(path)
            if earlier.done and not resume:
                pass  # the same file was loaded completely before: a new run sends it again, on purpose
            elif resume:
                earlier.resumed = True
                return earlier
            else:
                raise JournalError(
                    f"an unfinished run of this input exists ({len(earlier.accepted)} batch(es) accepted; "
                    f"journal {path}): pass --resume to continue it without resending what was accepted, "
                    "or --restart to send everything again"
                )
        elif resume and not path.is_file():
            pass  # nothing to resume: a fresh run (said in the summary)
        path.unlink(missing_ok=True)
        journal = cls(path=path, run_id=f"rtp-send-{secrets.token_hex(8)}")
        journal.header = {"kind": "run", "runId": journal.run_id, **meta}
        return journal

    @classmethod
    def _load(cls, path: Path) -> Journal:
        journal: Journal | None = None
        raw = path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            # A torn last line from a kill mid-write: the action it announced never started. Drop it so
            # the next entry starts on a line of its own.
            raw = raw[: raw.rfind(b"\n") + 1]
            with path.open("r+b") as handle:
                handle.truncate(len(raw))
        for number, text in enumerate(raw.decode("utf-8").splitlines(), start=1):
            try:
                entry = json.loads(text)
            except json.JSONDecodeError:
                raise JournalError(
                    f"{path}:{number} is not valid JSON; delete it or pass --restart"
                ) from None
            kind = entry.get("kind")
            if kind == "run":
                journal = cls(path=path, run_id=str(entry["runId"]))
            elif journal is None:
                raise JournalError(f"{path} does not start with a run entry; delete it or pass --restart")
            elif kind == "sending":
                journal.sending[int(entry["batch"])] = str(entry["key"])
            elif kind == "accepted":
                journal.accepted[int(entry["batch"])] = {"batchId": entry["batchId"], "count": entry["count"]}
            elif kind == "done":
                journal.done = True
        if journal is None:
            raise JournalError(f"{path} is empty; delete it or pass --restart")
        return journal
