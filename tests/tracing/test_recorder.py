"""The recorder: records reach the store, survive store outages and SIGKILL, never fail the caller."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from testenv import PG_URL
from sqlalchemy.engine import make_url

from keel.store import open_store
from keel.store.testing import TcpProxy, temporary_database
from keel.tracing import Recorder

WAIT = 30.0  # generous upper bound for waiting on the writer; never an assertion on speed


def trace(**fields: object) -> dict[str, object]:
    now = time.time()
    return {"id": uuid.uuid4().hex, "kind": "chat", "source": "gateway", "started_at": now, "ended_at": now,
            "model": "small", "status": "ok", "cost": None, "request": {"messages": []}, "tags": {}} | fields


def record_many(recorder: Recorder, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        record = trace()
        recorder.record(record)
        ids.append(str(record["id"]))
    return ids


def stored_ids(url: str) -> list[str]:
    with open_store(url) as store:
        return [t["id"] for t in store.list_traces(limit=1_000_000)]


def line(record: dict[str, object]) -> bytes:
    return orjson.dumps(record) + b"\n"


def leave_dead_journal(root: Path, segment: bytes) -> Path:
    """What a process killed mid-write leaves: its directory, an unlocked lock, a segment."""
    dead = root / "999999-deadbeef"
    dead.mkdir(parents=True)
    (dead / "lock").touch()
    (dead / "00000001.jsonl").write_bytes(segment)
    return dead


def journal_files(journal: Path) -> list[Path]:
    return sorted(p for p in journal.rglob("*") if p.is_file()) if journal.exists() else []


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'keel.db'}"


@pytest.fixture
def recorders() -> Iterator[Callable[..., Recorder]]:
    made: list[Recorder] = []

    def make(url: str, journal: Path, flush_interval: float = 0.02) -> Recorder:
        made.append(Recorder(url, journal, flush_interval=flush_interval))
        return made[-1]

    yield make
    for recorder in made:
        recorder.close(timeout=1.0)


def test_records_reach_the_store_and_the_journal_is_cleaned(
    recorders: Callable[..., Recorder], sqlite_url: str, tmp_path: Path
) -> None:
    recorder = recorders(sqlite_url, tmp_path / "journal")
    ids = record_many(recorder, 300)
    assert recorder.flush(WAIT) is True
    assert sorted(stored_ids(sqlite_url)) == sorted(ids)
    assert recorder.close() is True
    assert list((tmp_path / "journal").iterdir()) == []


def test_flush_waits_for_what_was_recorded_before_it(
    recorders: Callable[..., Recorder], sqlite_url: str, tmp_path: Path
) -> None:
    recorder = recorders(sqlite_url, tmp_path / "journal", flush_interval=3600)  # only flush wakes it
    assert recorder.flush(0.1) is True  # nothing recorded yet
    for _ in range(5):
        recorder.record(trace())
    assert recorder.flush(WAIT) is True
    assert len(stored_ids(sqlite_url)) == 5


def test_record_from_many_threads(recorders: Callable[..., Recorder], sqlite_url: str, tmp_path: Path) -> None:
    recorder = recorders(sqlite_url, tmp_path / "journal")
    threads = [threading.Thread(target=record_many, args=(recorder, 250)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert recorder.flush(WAIT) is True
    assert len(set(stored_ids(sqlite_url))) == 1000


def test_bad_records_never_raise_and_do_not_block_the_others(
    recorders: Callable[..., Recorder], sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = recorders(sqlite_url, tmp_path / "journal")
    good = trace()
    recorder.record({1: object()})  # type: ignore[dict-item]  # cannot be serialised: dropped, logged
    recorder.record(trace(started_at=None))  # the database refuses it: set aside, logged
    recorder.record(good)
    assert recorder.flush(WAIT) is True
    assert stored_ids(sqlite_url) == [good["id"]]
    assert (tmp_path / "journal" / "rejected.jsonl").read_bytes().count(b"\n") == 1
    assert "cannot be serialised" in caplog.text and "refused 1 record" in caplog.text


def test_store_path_unwritable_until_fixed(
    recorders: Callable[..., Recorder], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the store's directory should be")
    url = f"sqlite:///{blocker / 'keel.db'}"
    recorder = recorders(url, tmp_path / "journal")
    ids = record_many(recorder, 50)
    assert recorder.flush(0.5) is False
    assert journal_files(tmp_path / "journal")  # spooled
    blocker.unlink()
    assert recorder.flush(WAIT) is True
    assert sorted(stored_ids(url)) == sorted(ids)
    assert caplog.text.count("cannot write traces") == 1  # one warning per outage, not per attempt


def _make_read_only(folder: Path) -> Callable[[], None]:
    """Make a directory and its files unwritable; returns the undo. Root ignores modes: use chattr."""
    paths = [folder, *folder.iterdir()]
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(0o555 if p.is_dir() else 0o444)
        return lambda: [p.chmod(mode) for p, mode in modes.items()] and None
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", *map(str, paths)], capture_output=True).returncode:
        pytest.skip("running as root without a working chattr: cannot make a file read-only")
    return lambda: subprocess.run([chattr, "-i", *map(str, paths)], check=True) and None


def test_read_only_sqlite_store_until_restored(
    recorders: Callable[..., Recorder], sqlite_url: str, tmp_path: Path
) -> None:
    open_store(sqlite_url).close()
    restore = _make_read_only(tmp_path / "store")
    try:
        recorder = recorders(sqlite_url, tmp_path / "journal")
        ids = record_many(recorder, 40)
        assert recorder.flush(0.5) is False
    finally:
        restore()
    assert recorder.flush(WAIT) is True
    assert sorted(stored_ids(sqlite_url)) == sorted(ids)


@pytest.mark.postgres
def test_postgres_outage_spools_and_catches_up(recorders: Callable[..., Recorder], tmp_path: Path) -> None:
    with temporary_database(PG_URL) as url, TcpProxy(_host_port(url)) as proxy:
        via_proxy = make_url(url).set(port=proxy.port).render_as_string(hide_password=False)
        recorder = recorders(via_proxy, tmp_path / "journal")
        before = record_many(recorder, 20)
        assert recorder.flush(WAIT) is True

        proxy.stop()
        during = record_many(recorder, 30)
        assert recorder.flush(1.0) is False
        assert len(stored_ids(url)) == 20

        proxy.start()
        assert recorder.flush(WAIT) is True
        assert recorder.close() is True
        ids = stored_ids(url)
        assert len(ids) == 50 and sorted(ids) == sorted(before + during)


def _host_port(url: str) -> tuple[str, int]:
    parsed = make_url(url)
    return parsed.host or "127.0.0.1", parsed.port or 5432


CHILD = """
import sys, time, uuid
from pathlib import Path
from keel.tracing import Recorder
url, journal, count, interval = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
recorder = Recorder(url, journal, flush_interval=interval)
for i in range(count):
    trace_id = uuid.uuid4().hex
    recorder.record({"id": trace_id, "started_at": time.time(), "model": "m", "status": "ok"})
    print("answered", trace_id, flush=True)
print("done", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("child_flush_interval", [3600.0, 0.001], ids=["nothing-committed", "some-committed"])
def test_sigkill_loses_no_answered_record(
    recorders: Callable[..., Recorder], sqlite_url: str, tmp_path: Path, child_flush_interval: float
) -> None:
    journal = tmp_path / "journal"
    args = [sys.executable, "-c", CHILD, sqlite_url, str(journal), "300", str(child_flush_interval)]
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        answered = []
        for output in child.stdout:
            if output.startswith("answered"):
                answered.append(output.split()[1])
            elif output.startswith("done"):
                break
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)
    assert len(answered) == 300
    assert journal_files(journal)  # the dead process left its spool

    recorder = recorders(sqlite_url, journal)
    recorder.recover()
    assert recorder.flush(WAIT) is True
    assert sorted(stored_ids(sqlite_url)) == sorted(answered)
    assert recorder.close() is True
    assert journal_files(journal) == []


def test_torn_trailing_line_is_skipped_with_a_warning(
    recorders: Callable[..., Recorder], sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    whole = [trace() for _ in range(3)]
    dead = leave_dead_journal(tmp_path / "journal", b"".join(map(line, whole)) + line(trace())[:40])

    recorder = recorders(sqlite_url, tmp_path / "journal")
    assert recorder.recover() == 1
    assert recorder.flush(WAIT) is True
    assert sorted(stored_ids(sqlite_url)) == sorted(t["id"] for t in whole)
    assert "torn last line" in caplog.text
    assert not dead.exists()


def test_a_dead_segment_ending_in_reserved_space_is_imported_whole(
    recorders: Callable[..., Recorder], sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A process killed while writing leaves its segment at the size it reserved: records, maybe a
    torn one, then zeros. The zeros are not records."""
    whole = [trace() for _ in range(3)]
    leave_dead_journal(tmp_path / "journal", b"".join(map(line, whole)) + line(trace())[:40] + b"\0" * 5000)

    recorder = recorders(sqlite_url, tmp_path / "journal")
    assert recorder.recover() == 1
    assert recorder.flush(WAIT) is True
    assert sorted(stored_ids(sqlite_url)) == sorted(t["id"] for t in whole)
    assert "torn last line (40 bytes)" in caplog.text


def test_the_first_record_recovers_dead_journals(
    recorders: Callable[..., Recorder], sqlite_url: str, tmp_path: Path
) -> None:
    left = trace()
    leave_dead_journal(tmp_path / "journal", line(left))
    recorder = recorders(sqlite_url, tmp_path / "journal")
    recorder.record(new := trace())
    deadline = time.monotonic() + WAIT
    while len(stored_ids(sqlite_url)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(stored_ids(sqlite_url)) == sorted([left["id"], new["id"]])


def test_close_with_the_store_down_leaves_the_records_for_the_next_recorder(
    recorders: Callable[..., Recorder], tmp_path: Path
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("in the way")
    url = f"sqlite:///{blocker / 'keel.db'}"
    first = Recorder(url, tmp_path / "journal", flush_interval=0.02)
    ids = record_many(first, 10)
    assert first.close(timeout=0.3) is False
    blocker.unlink()
    second = recorders(url, tmp_path / "journal")
    second.recover()
    assert second.flush(WAIT) is True
    assert sorted(stored_ids(url)) == sorted(ids)


def test_a_forked_child_records_into_its_own_journal(
    recorders: Callable[..., Recorder], sqlite_url: str, tmp_path: Path
) -> None:
    recorder = recorders(sqlite_url, tmp_path / "journal")
    recorder.record(parent_trace := trace())
    child_trace = trace()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: 3.12+
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        recorder.record(child_trace)
        os._exit(0 if recorder.close(WAIT) else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert recorder.flush(WAIT) is True
    assert sorted(stored_ids(sqlite_url)) == sorted([parent_trace["id"], child_trace["id"]])


def test_importing_the_recorder_does_not_import_sqlalchemy() -> None:
    code = "import sys, keel.tracing; sys.exit('sqlalchemy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_lazy_start_creates_nothing_until_used(tmp_path: Path, sqlite_url: str) -> None:
    recorder = Recorder(sqlite_url, tmp_path / "journal")
    assert not (tmp_path / "journal").exists()
    assert recorder.close() is True
