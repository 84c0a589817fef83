"""The append-only tick journal: the point at which a tick becomes durable.

Guarantees:

* :meth:`Journal.append` returns only after the record is written (and, with
  :attr:`SyncPolicy.FSYNC`, after ``fdatasync``). If it raises, the record is not in the
  journal: a failed write is truncated away, so nothing unacknowledged stays behind.
* :meth:`Journal.open` recovers: a torn record at the very end of the last segment (a crash in
  the middle of a write) is truncated and reported; offsets and per-symbol seqs continue from
  the last intact record. Damage anywhere else (a bad CRC followed by more data, a missing
  segment) keeps everything before it, moves the damaged segment and everything after it to
  ``quarantine/``, reports the dropped offset range, and starts a new epoch, because offsets
  that clients may already have seen can no longer be served.
* Reads (:meth:`Journal.read`) see only records whose append has returned, and are safe from
  other threads while one thread appends.

Appends and reads block; async callers run them in a thread.
"""

from __future__ import annotations

import bisect
import contextlib
import enum
import logging
import os
import shutil
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import JournalUnavailableError
from ..model import JournaledBatch
from . import records
from .records import HEADER_SIZE, RECORD_HEADER, Checkpoint, SymbolState

__all__ = ["DroppedSpan", "Journal", "RecoveryReport", "SyncPolicy"]

log = logging.getLogger("tickwire.journal")

DEFAULT_SEGMENT_BYTES = 256 * 1024 * 1024


class SyncPolicy(enum.StrEnum):
    """How far a record is pushed before :meth:`Journal.append` returns.

    ``fsync``: ``fdatasync`` after every group commit; survives power loss.
    ``none``: written to the OS page cache only; survives a crash of tickwire (even SIGKILL)
    but not of the machine. Faster on slow disks.
    """

    FSYNC = "fsync"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class DroppedSpan:
    """A damaged part of the journal that recovery set aside."""

    path: str
    first_offset: int
    last_offset: int | None  # None when the damaged part's end could not be read
    reason: str


@dataclass(slots=True)
class RecoveryReport:
    """What :meth:`Journal.open` found and did."""

    epoch: int
    last_offset: int
    segments: int
    ticks_scanned: int = 0
    truncated_bytes: int = 0
    dropped: list[DroppedSpan] = field(default_factory=list)
    new_epoch: bool = False
    seconds: float = 0.0


@dataclass(slots=True)
class _Segment:
    path: Path
    epoch: int
    first_offset: int
    size: int
    # per ticks record: first offset and file position; parallel lists for bisect
    record_offsets: list[int] = field(default_factory=list)
    record_positions: list[int] = field(default_factory=list)
    last_offset: int = 0  # first_offset - 1 while empty

    @property
    def name(self) -> str:
        return self.path.name


def _segment_name(first_offset: int) -> str:
    return f"{first_offset:020d}.seg"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_epoch(previous: int) -> int:
    return max(previous + 1, int(time.time()))


class Journal:
    """Segments of tick records in one directory. Use :meth:`open`."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int,
        sync: SyncPolicy,
        segments: list[_Segment],
        state: dict[str, SymbolState],
        last_offset: int,
        epoch: int,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.sync_policy = sync
        self._segments = segments
        self._segment_firsts = [s.first_offset for s in segments]
        self.state = state
        self.last_offset = last_offset
        self.epoch = epoch
        self._fd: int | None = None
        self._read_fds: dict[Path, int] = {}
        self._read_lock = threading.Lock()
        self.failure: str | None = None
        self.closed = False

    # -- recovery ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        sync: SyncPolicy = SyncPolicy.FSYNC,
    ) -> tuple[Journal, RecoveryReport]:
        """Open or create the journal in ``directory`` and recover it (see the module doc).

        Raises :class:`JournalUnavailableError` if the directory cannot be created or written.
        """
        started = time.perf_counter()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise JournalUnavailableError(
                f"journal directory {directory} is not writable: {exc.strerror or exc}"
            ) from exc

        paths = sorted(directory.glob("*.seg"))
        segments: list[_Segment] = []
        state: dict[str, SymbolState] = {}
        last_offset = 0
        epoch = 0
        report = RecoveryReport(epoch=0, last_offset=0, segments=0)
        damaged_from: int | None = None  # index into paths of the first damaged segment
        damage_reason = ""
        damage_first = 0

        for index, path in enumerate(paths):
            is_last = index == len(paths) - 1
            data = path.read_bytes()
            try:
                seg_epoch, first = records.decode_segment_header(data)
            except ValueError as exc:
                if is_last and len(data) < HEADER_SIZE and segments:
                    # a crash while creating the segment: nothing in it was acknowledged
                    report.truncated_bytes += len(data)
                    path.unlink()
                    continue
                damaged_from, damage_reason, damage_first = index, str(exc), last_offset + 1
                break
            if segments and first != last_offset + 1:
                damaged_from, damage_first = index, last_offset + 1
                damage_reason = f"segment starts at offset {first}, expected {last_offset + 1}"
                break
            segment = _Segment(path, seg_epoch, first, HEADER_SIZE, last_offset=first - 1)
            pos = HEADER_SIZE
            bad: str | None = None
            while pos < len(data):
                if pos + RECORD_HEADER.size > len(data):
                    bad = "torn record header"
                    break
                length, crc = RECORD_HEADER.unpack_from(data, pos)
                end = pos + RECORD_HEADER.size + length
                if length == 0 or length > records.MAX_RECORD_BYTES or end > len(data):
                    bad = "torn record" if end >= len(data) else "bad record length"
                    break
                payload = memoryview(data)[pos + RECORD_HEADER.size : end]
                if zlib.crc32(payload) != crc:
                    bad = "CRC mismatch"
                    break
                kind = records.record_kind(payload)
                if kind == records.TICKS:
                    span_first, count = records.ticks_span(payload)
                    if span_first != segment.last_offset + 1:
                        bad = f"record at offset {span_first} breaks the sequence"
                        break
                    segment.record_offsets.append(span_first)
                    segment.record_positions.append(pos)
                    segment.last_offset = span_first + count - 1
                    report.ticks_scanned += count
                elif kind != records.CHECKPOINT:
                    bad = f"unknown record type {kind}"
                    break
                pos = end
            segment.size = pos
            segments.append(segment)
            last_offset = segment.last_offset
            epoch = seg_epoch
            if bad is None:
                continue
            # a damaged record that reaches the end of the last segment is a torn write
            torn = is_last and (
                pos + RECORD_HEADER.size > len(data)
                or pos + RECORD_HEADER.size + RECORD_HEADER.unpack_from(data, pos)[0] >= len(data)
            )
            if torn:
                report.truncated_bytes += len(data) - pos
                with open(path, "r+b") as f:
                    f.truncate(pos)
                    os.fsync(f.fileno())
                log.warning(
                    "journal: truncated a torn tail of %d bytes in %s", len(data) - pos, path.name
                )
            else:
                damaged_from, damage_reason = index, f"{bad} at byte {pos} of {path.name}"
                damage_first = segment.last_offset + 1
            break

        if damaged_from is not None:
            quarantine = directory / "quarantine" / time.strftime("%Y%m%dT%H%M%S")
            quarantine.mkdir(parents=True, exist_ok=True)
            damaged = paths[damaged_from:]
            for path in damaged:
                shutil.copy2(path, quarantine / path.name)
            kept = segments[-1] if segments and segments[-1].path == damaged[0] else None
            for path in damaged:
                if kept is not None and path == kept.path:
                    with open(path, "r+b") as f:
                        f.truncate(kept.size)
                        os.fsync(f.fileno())
                else:
                    path.unlink()
            report.dropped.append(
                DroppedSpan(
                    str(quarantine),
                    damage_first,
                    None,
                    f"{damage_reason}; {len(damaged)} segment(s) copied to quarantine",
                )
            )
            log.error(
                "journal: damage found (%s); kept offsets up to %d, dropped from %d on, "
                "copies in %s",
                damage_reason,
                last_offset,
                damage_first,
                quarantine,
            )

        if segments:
            tail = segments[-1]
            with open(tail.path, "rb") as f:
                state = _state_of_prefix(f.read(tail.size), tail.epoch, {})

        journal = cls(
            directory,
            segment_bytes=segment_bytes,
            sync=sync,
            segments=segments,
            state=state,
            last_offset=last_offset,
            epoch=epoch,
        )
        if not segments or damaged_from is not None:
            journal.epoch = _new_epoch(epoch)
            report.new_epoch = True
            journal._start_segment()
        else:
            journal._open_tail()
        report.epoch = journal.epoch
        report.last_offset = journal.last_offset
        report.segments = len(journal._segments)
        report.seconds = time.perf_counter() - started
        return journal, report

    # -- writing ----------------------------------------------------------------------------

    def _open_tail(self) -> None:
        tail = self._segments[-1]
        self._fd = os.open(tail.path, os.O_WRONLY | os.O_APPEND)

    def _start_segment(self) -> None:
        """Begin a segment at ``last_offset + 1`` holding a checkpoint of the current state."""
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        first = self.last_offset + 1
        path = self.directory / _segment_name(first)
        checkpoint = records.encode_record(
            records.encode_checkpoint(Checkpoint(next_offset=first, symbols=dict(self.state)))
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            _write_all(fd, records.encode_segment_header(self.epoch, first) + checkpoint)
            os.fsync(fd)
            _fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._fd = fd
        segment = _Segment(
            path, self.epoch, first, HEADER_SIZE + len(checkpoint), last_offset=first - 1
        )
        self._segments.append(segment)
        self._segment_firsts.append(first)

    def starts_segment(self, batch: JournaledBatch) -> bool:
        """True if appending ``batch`` would first close the current segment (an ``fsync`` of
        it and of the directory: slow, whatever the sync policy)."""
        return self._needs_new_segment(records.ticks_record_size(batch))

    def _needs_new_segment(self, nbytes: int) -> bool:
        segment = self._segments[-1]
        return bool(segment.record_offsets) and segment.size + nbytes > self.segment_bytes

    def append(self, batch: JournaledBatch) -> None:
        """Write ``batch`` as one record, then sync per the policy; see the module guarantees."""
        if self.closed:
            raise JournalUnavailableError("journal is closed")
        if batch.first_offset != self.last_offset + 1 or batch.epoch != self.epoch:
            raise ValueError(
                f"batch starts at {batch.epoch}:{batch.first_offset}, "
                f"journal expects {self.epoch}:{self.last_offset + 1}"
            )
        frame = records.encode_ticks_record(batch)
        try:
            segment = self._segments[-1]
            if self._needs_new_segment(len(frame)):
                self._start_segment()
                segment = self._segments[-1]
            assert self._fd is not None
            try:
                _write_all(self._fd, frame)
                if self.sync_policy is SyncPolicy.FSYNC:
                    os.fdatasync(self._fd)
            except OSError:
                # remove whatever part of the record reached the file
                try:
                    os.ftruncate(self._fd, segment.size)
                except OSError as exc:
                    self.failure = f"journal cannot repair a failed write: {exc.strerror}"
                raise
        except OSError as exc:
            reason = f"journal write failed: {exc.strerror or exc}"
            if self.failure is None or "repair" not in self.failure:
                self.failure = reason
            raise JournalUnavailableError(self.failure) from exc
        self.failure = None
        segment.record_offsets.append(batch.first_offset)
        segment.record_positions.append(segment.size)
        segment.size += len(frame)
        segment.last_offset = batch.last_offset
        self.last_offset = batch.last_offset
        _advance_state(self.state, batch)

    def sync(self) -> None:
        """Force everything written so far to disk."""
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        """Sync and close. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        with self._read_lock:
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()

    # -- reading ----------------------------------------------------------------------------

    @property
    def first_offset(self) -> int:
        """The oldest offset still in the journal (``last_offset + 1`` when empty)."""
        for segment in self._segments:
            if segment.record_offsets:
                return segment.record_offsets[0]
        return self.last_offset + 1

    def drop_segments(self, *, up_to_offset: int, older_than: float) -> int:
        """Delete whole segments that end at or before ``up_to_offset`` and were last written
        before the Unix time ``older_than``. The segment being written is never deleted, and
        every segment keeps its checkpoint, so seqs continue. Returns how many were deleted.
        """
        dropped = 0
        while len(self._segments) > 1:
            segment = self._segments[0]
            if segment.last_offset > up_to_offset:
                break
            try:
                if segment.path.stat().st_mtime >= older_than:
                    break
                with self._read_lock:
                    fd = self._read_fds.pop(segment.path, None)
                    if fd is not None:
                        os.close(fd)
                segment.path.unlink()
            except OSError as exc:
                log.warning("journal: cannot delete %s: %s", segment.name, exc)
                break
            self._segments.pop(0)
            self._segment_firsts.pop(0)
            dropped += 1
        return dropped

    @property
    def epoch_first_offset(self) -> int:
        """The first offset of the current epoch."""
        first = self.last_offset + 1
        for segment in reversed(self._segments):
            if segment.epoch != self.epoch:
                break
            first = segment.first_offset
        return first

    def read(self, after: int, *, max_ticks: int = 100_000) -> list[JournaledBatch]:
        """Batches holding the ticks after offset ``after``, at most ``max_ticks`` of them.

        Returns an empty list if there is nothing after ``after``. Raises LookupError if
        ``after + 1`` is older than the journal's first offset.
        """
        if after >= self.last_offset:
            return []
        if after + 1 < self.first_offset:
            raise LookupError(f"offset {after + 1} is older than the journal")
        out: list[JournaledBatch] = []
        total = 0
        for batch in self._iter_from(after):
            batch = batch.since(after)
            if total + len(batch) > max_ticks and out:
                break
            if len(batch) > max_ticks:
                batch = batch.head(max_ticks)
            out.append(batch)
            total += len(batch)
            if total >= max_ticks:
                break
        return out

    def _iter_from(self, after: int) -> Iterator[JournaledBatch]:
        index = max(0, bisect.bisect_right(self._segment_firsts, after + 1) - 1)
        segments = self._segments
        while index < len(segments):
            segment = segments[index]
            offsets = segment.record_offsets
            start = max(0, bisect.bisect_right(offsets, after + 1) - 1)
            fd = self._read_fd(segment.path)
            for i in range(start, len(offsets)):
                pos = segment.record_positions[i]
                head = os.pread(fd, RECORD_HEADER.size, pos)
                length, crc = RECORD_HEADER.unpack(head)
                payload = os.pread(fd, length, pos + RECORD_HEADER.size)
                if zlib.crc32(payload) != crc:
                    raise JournalUnavailableError(
                        f"journal record at byte {pos} of {segment.name} failed its CRC on read"
                    )
                yield records.decode_ticks(payload, segment.epoch)
            index += 1

    def _read_fd(self, path: Path) -> int:
        with self._read_lock:
            fd = self._read_fds.get(path)
            if fd is None:
                fd = os.open(path, os.O_RDONLY)
                self._read_fds[path] = fd
            return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _advance_state(state: dict[str, SymbolState], batch: JournaledBatch) -> None:
    """Record the last tick of each symbol in ``batch``."""
    n = len(batch)
    if n == 0:
        return
    last = np.full(len(batch.symbols), -1, dtype=np.int64)
    np.maximum.at(last, batch.sym, np.arange(n, dtype=np.int64))
    for local, i in enumerate(last.tolist()):
        if i >= 0:
            state[batch.symbols[local]] = SymbolState(
                int(batch.seq[i]),
                int(batch.ts[i]),
                float(batch.bid[i]),
                float(batch.ask[i]),
                batch.first_offset + i,
            )


def _state_of_prefix(
    data: bytes, epoch: int, start: dict[str, SymbolState]
) -> dict[str, SymbolState]:
    """Per-symbol state after the intact records of a segment's bytes."""
    state = dict(start)
    pos = HEADER_SIZE
    while pos < len(data):
        length, _ = RECORD_HEADER.unpack_from(data, pos)
        payload = memoryview(data)[pos + RECORD_HEADER.size : pos + RECORD_HEADER.size + length]
        kind = records.record_kind(payload)
        if kind == records.CHECKPOINT:
            state = dict(records.decode_checkpoint(payload).symbols)
        elif kind == records.TICKS:
            _advance_state(state, records.decode_ticks(payload, epoch))
        pos += RECORD_HEADER.size + length
    return state
