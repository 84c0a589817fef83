"""The journal: durability, recovery of torn tails and damage, reads by offset."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tickwire.errors import JournalUnavailableError
from tickwire.journal import Journal, SyncPolicy
from tickwire.model import JournaledBatch, TickBatch

from .conftest import make_batch


def positioned(journal: Journal, batch: TickBatch, seqs: dict[str, int]) -> JournaledBatch:
    """Give ``batch`` the next offsets and per-symbol seqs, like the tickplant does."""
    seq = np.empty(len(batch), dtype=np.uint64)
    for i, s in enumerate(batch.sym.tolist()):
        name = batch.symbols[s]
        seqs[name] = seqs.get(name, 0) + 1
        seq[i] = seqs[name]
    return JournaledBatch(
        journal.epoch,
        journal.last_offset + 1,
        batch.symbols,
        batch.sym,
        seq,
        batch.ts,
        batch.bid,
        batch.ask,
    )


def fill(directory: Path, batches: int, size: int, **kwargs: object) -> tuple[int, int]:
    """Write ``batches`` batches of ``size`` ticks; return (epoch, last offset)."""
    journal, _ = Journal.open(directory, **kwargs)  # type: ignore[arg-type]
    seqs = {name: st.seq for name, st in journal.state.items()}
    for i in range(batches):
        journal.append(positioned(journal, make_batch(size, seed=i), seqs))
    result = journal.epoch, journal.last_offset
    journal.close()
    return result


def test_reopen_continues_offsets_and_seqs(tmp_path: Path) -> None:
    """After a reopen, the offset and every symbol's seq continue where they stopped."""
    epoch, last = fill(tmp_path, 5, 100)
    journal, report = Journal.open(tmp_path)
    assert (journal.epoch, journal.last_offset) == (epoch, last) == (epoch, 500)
    assert not report.new_epoch and report.truncated_bytes == 0
    assert sum(st.seq for st in journal.state.values()) == 500
    batches = journal.read(0, max_ticks=10_000)
    ticks = [t for b in batches for t in b.ticks()]
    assert [t.offset for t in ticks] == list(range(1, 501))
    for name, st in journal.state.items():
        mine = [t for t in ticks if t.symbol == name]
        assert [t.seq for t in mine] == list(range(1, st.seq + 1))
        assert (mine[-1].bid, mine[-1].offset) == (st.bid, st.offset)
    journal.close()


def test_read_from_any_offset_across_segments(tmp_path: Path) -> None:
    """Reads start at any offset, span segments, and respect max_ticks."""
    fill(tmp_path, 20, 1000, segment_bytes=100_000)
    journal, report = Journal.open(tmp_path, segment_bytes=100_000)
    assert report.segments > 3
    for after in (0, 1, 999, 1000, 12_345, 19_999):
        got = journal.read(after, max_ticks=2500)
        offsets = np.concatenate([b.first_offset + np.arange(len(b)) for b in got])
        assert offsets[0] == after + 1
        assert (np.diff(offsets) == 1).all()
        assert len(offsets) <= 2500
    assert journal.read(20_000) == []
    journal.close()


def test_torn_tail_is_truncated(tmp_path: Path) -> None:
    """A half-written last record is cut off; everything before it survives, same epoch."""
    epoch, last = fill(tmp_path, 3, 100)
    segment = sorted(tmp_path.glob("*.seg"))[-1]
    size = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write((5000).to_bytes(4, "little") + b"\x01\x02\x03\x04" + b"partial")
    journal, report = Journal.open(tmp_path)
    assert report.truncated_bytes == 15
    assert (journal.epoch, journal.last_offset) == (epoch, last)
    assert segment.stat().st_size == size
    journal.close()


def test_damage_in_the_middle_keeps_the_prefix_and_starts_a_new_epoch(tmp_path: Path) -> None:
    """A bad CRC inside the journal keeps what precedes it, quarantines the rest, reports it."""
    epoch, _ = fill(tmp_path, 30, 1000, segment_bytes=200_000)
    segments = sorted(tmp_path.glob("*.seg"))
    assert len(segments) >= 4
    victim = segments[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    journal, report = Journal.open(tmp_path, segment_bytes=200_000)
    assert report.new_epoch and journal.epoch > epoch
    assert len(report.dropped) == 1
    kept = journal.last_offset
    assert 0 < kept < 30_000
    assert report.dropped[0].first_offset == kept + 1
    quarantined = list((tmp_path / "quarantine").rglob("*.seg"))
    assert len(quarantined) == len(segments) - 1
    got = journal.read(0, max_ticks=100_000)
    assert sum(len(b) for b in got) == kept
    # the journal keeps accepting ticks, with offsets after the intact prefix
    seqs = {name: st.seq for name, st in journal.state.items()}
    journal.append(positioned(journal, make_batch(10), seqs))
    assert journal.last_offset == kept + 10
    journal.close()


def test_unwritable_directory_is_refused(tmp_path: Path) -> None:
    """A journal directory that cannot be created says why, as JournalUnavailableError."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(JournalUnavailableError, match="not writable"):
        Journal.open(blocker / "journal")


def test_failed_write_is_not_acknowledged(tmp_path: Path) -> None:
    """When the disk refuses a write (file size limit), append raises and leaves no trace."""
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from tests.test_journal import positioned
        from tests.conftest import make_batch
        from tickwire.errors import JournalUnavailableError
        from tickwire.journal import Journal
        from pathlib import Path
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        journal, _ = Journal.open(Path({str(tmp_path)!r}))
        seqs = {{}}
        journal.append(positioned(journal, make_batch(100), seqs))
        size = sorted(Path({str(tmp_path)!r}).glob("*.seg"))[-1].stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 1000, size + 1000))
        try:
            journal.append(positioned(journal, make_batch(1000, seed=1), seqs))
        except JournalUnavailableError as exc:
            print("refused:", exc)
        print("last", journal.last_offset, "failure", journal.failure)
        journal.close()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert out.returncode == 0, out.stderr
    assert "refused: journal write failed: File too large" in out.stdout
    assert "last 100 failure journal write failed" in out.stdout
    journal, report = Journal.open(tmp_path)
    assert journal.last_offset == 100 and report.truncated_bytes == 0
    journal.close()


def test_sync_policy_none_still_survives_reopen(tmp_path: Path) -> None:
    """With sync=none the records reach the OS and are read back after a reopen."""
    _, last = fill(tmp_path, 4, 50, sync=SyncPolicy.NONE)
    journal, _ = Journal.open(tmp_path)
    assert journal.last_offset == last == 200
    journal.close()


def test_retention_drops_old_segments_but_keeps_seqs(tmp_path: Path) -> None:
    """Old, applied segments are deleted; the rest reads fine and seqs continue after reopen."""
    fill(tmp_path, 20, 1000, segment_bytes=100_000)
    journal, _ = Journal.open(tmp_path, segment_bytes=100_000)
    state = dict(journal.state)
    segments = sorted(tmp_path.glob("*.seg"))
    old = time.time() - 3600
    for path in segments[:-1]:
        os.utime(path, (old, old))
    assert journal.drop_segments(up_to_offset=5_000, older_than=time.time() - 60) >= 1
    assert journal.first_offset > 1
    with pytest.raises(LookupError):
        journal.read(0)
    assert (
        journal.read(journal.first_offset - 1, max_ticks=10)[0].first_offset == journal.first_offset
    )
    journal.close()
    journal, _ = Journal.open(tmp_path, segment_bytes=100_000)
    assert journal.state == state and journal.last_offset == 20_000
    journal.close()
