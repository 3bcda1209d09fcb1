"""A local, fsynced, append-only file of settlements the database has not confirmed in time.

A response the client sees is billed, durably: when a settlement's commit does not return within the
flush timeout (the database is slow, down or failing), its generation and usage entry are appended to
this process's spool file and fsynced before the response goes out. The writer keeps retrying them;
once its queue is empty, every spooled line is committed and the file is emptied. If the process dies
first, the next start (of any process with the same `spool_path`) or `tollway reconcile --fix`
replays the file; generation ids are unique in the schema, so replaying what did land is a no-op.

Each process writes its own file (`<origin>.spool`) and holds an exclusive flock on it while alive,
so a replayer can tell a dead process's spool (lock free) from a live one's.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.engine import make_url

from tollway.ledger.records import EntryKind, GenerationRecord, LedgerEntry
from tollway.ledger.store import LedgerStore, entry_row, generation_row

log = logging.getLogger("tollway.ledger")

SUFFIX = ".spool"
REFUSED_SUFFIX = ".refused"


def default_spool_dir(database_url: str) -> Path:
    """Next to the SQLite file (`tollway.db.spool/`), else `tollway-spool/` in the working directory."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database).expanduser()
        return database.parent / (database.name + SUFFIX)
    return Path("tollway-spool")


def entry_from_dict(row: dict[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        account_id=row["account_id"],
        kind=EntryKind(row["kind"]),
        amount_nanos=int(row["amount_nanos"]),
        created_at_us=int(row["created_at_us"]),
        key_id=row.get("key_id"),
        generation_id=row.get("generation_id"),
    )


@dataclass(frozen=True, slots=True)
class SpooledSettlement:
    generation: dict[str, Any]
    entry: dict[str, Any] | None


def _parse(data: bytes) -> list[SpooledSettlement]:
    found = []
    for line in data.splitlines():
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            # A torn last line: the process died inside the write, before its fsync returned, so
            # that response was never sent (and the writer may still have committed it).
            continue
        found.append(SpooledSettlement(item["generation"], item.get("entry")))
    return found


class Spool:
    """This process's spool file; opened on the first settlement it must keep."""

    def __init__(self, directory: Path, origin: str, database_tag: str = "") -> None:
        self.directory = directory
        self._origin = origin
        # Names the database the settlements belong to, so a spool directory shared by gateways of
        # different databases never replays one's settlements into the other.
        self.database_tag = database_tag
        self._fd: int | None = None
        self.lines = 0  # settlements in the file not yet known to be committed
        self.appended = 0  # settlements ever spooled by this process

    @property
    def path(self) -> Path:
        return self.directory / f"{self.database_tag}.{self._origin}{SUFFIX}"

    def _open(self) -> int:
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # alive: replayers leave this file alone
            self._fd = fd
        return self._fd

    def append(self, generation: GenerationRecord, entry: LedgerEntry | None) -> None:
        """Write one settlement and fsync it; raises OSError when the disk refuses."""
        line = orjson.dumps(
            {
                "generation": generation_row(generation),
                "entry": None if entry is None else entry_row(entry, self._origin),
            }
        )
        fd = self._open()
        os.write(fd, line + b"\n")
        os.fsync(fd)
        self.lines += 1
        self.appended += 1

    def clear(self) -> None:
        """Everything spooled is committed (the writer's queue is empty): start the file over."""
        if self._fd is None or not self.lines:
            return
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self.lines = 0

    def close(self) -> None:
        """Shut down: drop the file when nothing in it is outstanding, else leave it for a replay."""
        if self._fd is None:
            return
        if not self.lines:
            with contextlib.suppress(OSError):
                self.path.unlink()
                self.directory.rmdir()  # only when empty: other processes' files stay
        os.close(self._fd)
        self._fd = None


@dataclass
class ReplayReport:
    files: int = 0
    settlements: int = 0
    written: int = 0  # settlements written now (the missing ones, when asked to write them)
    written_entries: list[LedgerEntry] = field(default_factory=list)
    live_files: list[str] = field(default_factory=list)
    missing_in_dead: list[SpooledSettlement] = field(default_factory=list)
    missing_in_live: list[SpooledSettlement] = field(default_factory=list)
    refused: list[SpooledSettlement] = field(default_factory=list)  # set aside: the database refuses them


async def _write_one(store: LedgerStore, settlement: SpooledSettlement) -> None:
    entries = [settlement.entry] if settlement.entry is not None else []
    await store.write_rows(entries, [settlement.generation])


async def _write_missing(
    store: LedgerStore, settlements: list[SpooledSettlement]
) -> tuple[list[SpooledSettlement], list[SpooledSettlement]]:
    """Write what the ledger lacks: (written, refused). One refused row does not hold the others back."""
    ids = [s.generation["id"] for s in settlements]
    present = await store.existing_generation_ids(ids)
    missing = [s for s in settlements if s.generation["id"] not in present]
    if not missing:
        return [], []
    try:
        await store.write_rows([s.entry for s in missing if s.entry is not None], [s.generation for s in missing])
        return missing, []
    except Exception:  # the database refused the batch: find the rows it refuses, write the rest
        written, refused = [], []
        for settlement in missing:
            try:
                await _write_one(store, settlement)
                written.append(settlement)
            except Exception as exc:  # kept aside for an operator; never blocks a start
                log.error(
                    "a spooled settlement was refused by the database",
                    extra={"generation_id": settlement.generation.get("id"), "error": str(exc)[:300]},
                )
                refused.append(settlement)
        return written, refused


def _set_aside(spool_file: _SpoolFile, refused: list[SpooledSettlement]) -> None:
    """Keep refused settlements in `<file>.refused` (not replayed again; reconcile reports them)."""
    lines = b"".join(orjson.dumps({"generation": s.generation, "entry": s.entry}) + b"\n" for s in refused)
    with open(spool_file.path.with_name(spool_file.path.name + REFUSED_SUFFIX), "ab") as out:
        out.write(lines)
        out.flush()
        os.fsync(out.fileno())


@dataclass
class _SpoolFile:
    path: Path
    fd: int | None  # locked by us (its process is dead); None when its process is alive
    settlements: list[SpooledSettlement]


def _scan(directory: Path, database_tag: str, own: Path | None) -> list[_SpoolFile]:
    """Every spool file of this database but our own, read; those whose process is dead stay locked by us."""
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob(f"{database_tag}.*{SUFFIX}")):
        if own is not None and path == own:
            continue
        try:
            fd: int | None = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        assert fd is not None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            fd = None
        found.append(_SpoolFile(path, fd, _parse(path.read_bytes())))
    return found


def _drop(spool_file: _SpoolFile) -> None:
    if spool_file.fd is None:
        return
    with contextlib.suppress(FileNotFoundError):
        spool_file.path.unlink()
    _release(spool_file)


def _release(spool_file: _SpoolFile) -> None:
    if spool_file.fd is not None:
        os.close(spool_file.fd)
        spool_file.fd = None


async def replay(
    directory: Path, store: LedgerStore, *, write_dead: bool = True, write_live: bool = False, own: Path | None = None
) -> ReplayReport:
    """Write the settlements of dead processes' spools to the ledger (exactly once) and drop their files.

    Live processes' spools are only read unless `write_live`: what they hold that the ledger lacks is
    reported (their writers find anything written here already there, and skip it). Without
    `write_dead`, dead processes' spools are reported the same way and left in place.
    """
    report = ReplayReport()
    database_tag = await store.identity()
    files = _scan(directory, database_tag, own)
    try:
        for spool_file in files:
            alive = spool_file.fd is None
            if alive:
                report.live_files.append(str(spool_file.path))
            else:
                report.files += 1
                report.settlements += len(spool_file.settlements)
            ids = [s.generation["id"] for s in spool_file.settlements]
            present = await store.existing_generation_ids(ids)
            missing = [s for s in spool_file.settlements if s.generation["id"] not in present]
            (report.missing_in_live if alive else report.missing_in_dead).extend(missing)
            if write_live if alive else write_dead:
                written, refused = await _write_missing(store, missing)
                report.written += len(written)
                report.written_entries += [entry_from_dict(s.entry) for s in written if s.entry is not None]
                if refused and not alive:
                    _set_aside(spool_file, refused)
                if not alive:
                    _drop(spool_file)
    finally:
        for spool_file in files:
            _release(spool_file)
    report.refused = _refused(directory, database_tag)
    if report.written:
        log.warning("replayed spooled settlements into the ledger", extra={"written": report.written})
    return report


def _refused(directory: Path, database_tag: str) -> list[SpooledSettlement]:
    if not directory.is_dir():
        return []
    paths = sorted(directory.glob(f"{database_tag}.*{SUFFIX}{REFUSED_SUFFIX}"))
    return [s for path in paths for s in _parse(path.read_bytes())]
