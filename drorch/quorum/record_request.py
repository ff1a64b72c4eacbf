"""The holder's `outdate` / `current` request against the outdate records, pure: what
changes, and the frame that answers it (the server checks the lease first, persists a
change before it sends the answer, and logs `why`)."""

from __future__ import annotations

from dataclasses import dataclass

from drorch.quorum.messages import NOT_CURRENT, RECORD_CHANGED, Cleared, Current, Outdate, Outdated
from drorch.quorum.outdates import OutdateBook
from drorch.quorum.protocol import encode, error_frame


@dataclass(frozen=True)
class RecordAnswer:
    frame: bytes
    changed: bool  # the records changed: persist before the answer goes out
    refused: bool
    why: str


def answer_record(
    book: OutdateBook, cluster: str, site: str, msg: Outdate | Current, epoch: int
) -> RecordAnswer:
    """`site` holds the lease at `epoch` and sent `msg`."""
    volume = msg.volume
    if isinstance(msg, Outdate):
        old = book.conflict(cluster, site, volume)
        if old is not None and not msg.force:
            why = (
                f"outdate {volume}: the witness records {site}'s own copy as outdated "
                f"(only {old.site}'s is current since epoch {old.epoch}); promote it "
                "with --force --accept-data-loss first"
            )
            return RecordAnswer(error_frame(NOT_CURRENT, why), False, True, why)
        record, why = book.outdate(cluster, site, volume, epoch)
        # a new serial, even for a record already standing
        return RecordAnswer(encode(Outdated(volume, record.epoch, record.serial)), True, False, why)
    before = book.records.get(cluster, {}).get(volume)
    gone, why = book.current(cluster, volume, msg.serial)
    if not gone:
        return RecordAnswer(error_frame(RECORD_CHANGED, why), False, True, why)
    return RecordAnswer(encode(Cleared(volume, epoch)), before is not None, False, why)
