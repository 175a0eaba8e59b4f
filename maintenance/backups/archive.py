"""Backup files on disk: the pipeline that writes them, the manifest beside each, reading back.

Writing: the engine's dump streams through zstd (`zstandard`, with its content checksum) and,
when BACKUP_ENCRYPTION_KEY is set, through `crypto.encrypt_stream`, into a private temporary
file in BACKUP_DIR (0600; the directory 0700), whose SHA-256 and size are taken on the way. The
file is fsynced, its manifest written beside it (`<name>.manifest.json`, also atomically),
then the file is renamed to its final name and the directory fsynced. The rename is the commit
point: a backup file under its final name is complete and has its manifest; a dump that failed
or timed out leaves nothing but a temporary file, removed at once (or, after a crash, by the
next operation, which holds the directory's lock).

Reading: checksum against the manifest, then decrypt into a private temporary file (used only
after the whole file authenticated: crypto.decrypt_stream's contract), then decompress into the
dump file the engine restores from.

Every operation holds BACKUP_DIR/.lock (flock) for its whole length, so a cleanup never deletes
a file being verified and two backups never interleave.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard
from django.conf import settings

from maintenance.backups import crypto
from maintenance.backups.engines import BackupError, BackupInvalid, BackupToolError

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = 1
ZSTD_LEVEL = 3
IO_CHUNK = 1 << 20
ENCRYPTION_CHUNK_SIZE = crypto.DEFAULT_CHUNK_SIZE  # 1 MiB of plaintext per authenticated chunk
LOCK_WAIT_SECONDS = 60
EXTENSIONS = {"sqlite": "sqlite3", "postgresql": "pgdump"}
NAME_PATTERN = re.compile(r"^pastq-\d{8}T\d{6}Z-[0-9a-f]{4,}\.(sqlite3|pgdump)\.zst(\.enc)?$")


class BackupIntegrityError(BackupInvalid):
    """The file does not match its manifest, does not authenticate or does not decompress."""


class BackupMissing(BackupInvalid):
    """No such backup, or its manifest is gone."""


class BackupBusy(BackupError):
    """Another backup operation holds the directory's lock."""


# --- the directory ---------------------------------------------------------------------------


def backup_dir() -> Path:
    """BACKUP_DIR, created 0700 (and tightened to 0700 when it is ours and looser)."""
    path = Path(settings.BACKUP_DIR)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid == os.getuid() and info.st_mode & 0o077:
        path.chmod(0o700)
    return path


def work_dir() -> Path:
    """Private scratch space for dumps being written or read (same file system as the
    backups, inside the 0700 directory: a decrypted dump is as secret as the database)."""
    path = backup_dir() / ".work"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def backup_path(name: str) -> Path:
    if not NAME_PATTERN.match(name):
        raise BackupMissing(f"{name!r} is not the name of a pastq backup (they look like "
                            "pastq-20261204T040000Z-1a2b.pgdump.zst.enc).")
    return backup_dir() / name


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def backup_name(engine: str, *, encrypted: bool, at) -> str:
    return (f"pastq-{at:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}.{EXTENSIONS[engine]}.zst"
            + (".enc" if encrypted else ""))


_lock_depth = threading.local()


@contextlib.contextmanager
def directory_lock(wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold BACKUP_DIR/.lock (re-entrant within a thread: a restore's safety backup runs
    inside the restore's lock). Leftovers of interrupted operations are removed when it is
    taken, since nothing else can be writing them then."""
    depth = getattr(_lock_depth, "n", 0)
    if depth:
        _lock_depth.n = depth + 1
        try:
            yield
        finally:
            _lock_depth.n -= 1
        return
    lock_file = backup_dir() / ".lock"
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 100, 0).decode(errors="replace").strip()
                    raise BackupBusy("Another backup operation is running"
                                     + (f" ({holder})" if holder else "")
                                     + f"; waited {wait:.0f} s. Try again when it has finished."
                                     ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
        leftovers_remove()
        _lock_depth.n = 1
        try:
            yield
        finally:
            _lock_depth.n = 0
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def leftovers_remove() -> list[str]:
    """Temporary files of operations that died (a worker killed at its time limit): call only
    while holding the directory's lock."""
    removed = []
    directory = backup_dir()
    candidates = list(directory.glob(".*.partial-*"))
    work = directory / ".work"
    if work.is_dir():
        candidates += [p for p in work.iterdir() if p.is_file()]
    for path in candidates:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    return removed


# --- writing ---------------------------------------------------------------------------------


class _HashingWriter:
    def __init__(self, raw: BinaryIO):
        self._raw, self._hash, self.size = raw, hashlib.sha256(), 0

    def write(self, data) -> int:
        self._raw.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class _CountingSource:
    def __init__(self, raw: BinaryIO):
        self._raw, self.size = raw, 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.size += len(data or b"")
        return data


@dataclass
class Written:
    path: Path
    size: int
    sha256: str
    dump_bytes: int
    key_fingerprint: str  # "" when not encrypted


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_file(path: Path):
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def write_atomically(path: Path, data: bytes) -> None:
    """A small file written whole or not at all, 0600."""
    partial = path.with_name(f".{path.name}.partial-{secrets.token_hex(4)}")
    try:
        with _private_file(partial) as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def archive_write(name: str, dump: Callable[[Callable[[BinaryIO], None]], object], *,
                  key: bytes | None) -> tuple[Written, object]:
    """Run `dump(consume)` (an engine's dump with its arguments bound): `consume` receives the
    dump as a stream and writes it compressed (and encrypted when `key` is given) into a
    temporary file. Returns what was written (still under its temporary name: `archive_commit`
    gives it its name) and what `dump` returned. On any failure nothing is left behind."""
    directory = backup_dir()
    partial = directory / f".{name}.partial-{secrets.token_hex(4)}"
    written: dict = {}
    try:
        with _private_file(partial) as file:
            writer = _HashingWriter(file)

            def consume(stream: BinaryIO) -> None:
                source = _CountingSource(stream)
                compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
                with compressor.stream_reader(source, read_size=IO_CHUNK,
                                              closefd=False) as compressed:
                    if key is not None:
                        header = crypto.encrypt_stream(compressed, writer, key=key,
                                                       chunk_size=ENCRYPTION_CHUNK_SIZE)
                        written["fingerprint"] = header.fingerprint
                    else:
                        shutil.copyfileobj(compressed, writer, IO_CHUNK)
                written["dump_bytes"] = source.size

            result = dump(consume)
            if "dump_bytes" not in written:
                raise BackupError("The database engine produced no dump.")
            file.flush()
            os.fsync(file.fileno())
        return Written(path=partial, size=writer.size, sha256=writer.sha256,
                       dump_bytes=written["dump_bytes"],
                       key_fingerprint=written.get("fingerprint", "")), result
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BackupToolError(f"Writing the backup failed ({exc}); nothing was kept.") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def archive_commit(written: Written, final: Path, manifest: dict) -> Path:
    """Write the manifest beside the final name, then rename the backup into place."""
    try:
        if final.exists():
            raise BackupError(f"{final.name} exists already.")
        write_atomically(manifest_path(final),
                         json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")
        os.replace(written.path, final)
        _fsync_dir(final.parent)
        return final
    except BaseException:
        written.path.unlink(missing_ok=True)
        raise


# --- reading ---------------------------------------------------------------------------------


def manifest_read(path: Path) -> dict:
    manifest_file = manifest_path(path)
    if not manifest_file.exists():
        raise BackupMissing(f"The manifest of {path.name} is missing ({manifest_file.name}): "
                            "without it the backup cannot be checked.")
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, ValueError) as exc:
        raise BackupIntegrityError(f"The manifest of {path.name} cannot be read: {exc}.") \
            from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise BackupIntegrityError(f"The manifest of {path.name} is not a pastq manifest of "
                                   f"format {MANIFEST_FORMAT}.")
    return manifest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(IO_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def archive_check(path: Path) -> dict:
    """The backup's manifest, once the file exists and its SHA-256 and size match it."""
    if not path.exists():
        raise BackupMissing(f"The backup {path.name} is not in {path.parent}.")
    manifest = manifest_read(path)
    size = path.stat().st_size
    if size != manifest.get("size_bytes"):
        raise BackupIntegrityError(
            f"{path.name} is {size} bytes but its manifest says {manifest.get('size_bytes')}: "
            "the file was truncated or replaced.")
    if file_sha256(path) != manifest.get("sha256"):
        raise BackupIntegrityError(f"{path.name} does not match its manifest's SHA-256: the "
                                   "file is damaged.")
    return manifest


def archive_extract(path: Path, manifest: dict, *, keys: dict[str, bytes], dest: Path) -> None:
    """Decrypt (into a temporary file, used only once it fully authenticated) and decompress
    the backup into `dest` (a new private file; it must not exist). Raises a BackupError saying what is wrong."""
    with path.open("rb") as file:
        encrypted = crypto.is_encrypted(file.read(len(crypto.MAGIC)))
    if encrypted != bool(manifest.get("encrypted")):
        raise BackupIntegrityError(
            f"{path.name} is {'' if encrypted else 'not '}encrypted but its manifest says "
            "otherwise: the file or the manifest was replaced.")
    decrypted = None
    try:
        if encrypted:
            decrypted = work_dir() / f".work-{secrets.token_hex(6)}.zst"
            with path.open("rb") as src, _private_file(decrypted) as dst:
                try:
                    header = crypto.decrypt_stream(src, dst, keys=keys)
                except crypto.BackupKeyError as exc:
                    raise BackupInvalid(f"Cannot decrypt {path.name}: {exc}") from exc
                except crypto.BackupCryptoError as exc:
                    raise BackupIntegrityError(f"{path.name}: {exc}") from exc
            if manifest.get("key_fingerprint") and header.fingerprint != manifest["key_fingerprint"]:
                raise BackupIntegrityError(f"{path.name} was encrypted with another key than its "
                                           "manifest names.")
        source = decrypted or path
        with source.open("rb") as src, _private_file(dest) as dst:
            try:
                zstandard.ZstdDecompressor().copy_stream(src, dst, read_size=IO_CHUNK,
                                                         write_size=IO_CHUNK)
            except zstandard.ZstdError as exc:
                raise BackupIntegrityError(f"{path.name} does not decompress ({exc}): the file "
                                           "is damaged.") from exc
    finally:
        if decrypted is not None:
            decrypted.unlink(missing_ok=True)


def archive_delete(path: Path) -> None:
    path.unlink(missing_ok=True)
    manifest_path(path).unlink(missing_ok=True)


@dataclass
class OnDisk:
    name: str
    path: Path
    file_present: bool
    manifest: dict | None
    problem: str = ""


def archive_scan() -> list[OnDisk]:
    """Every backup in BACKUP_DIR (a file or a manifest under a backup's name), newest first."""
    directory = backup_dir()
    names = set()
    for path in directory.iterdir():
        name = path.name.removesuffix(MANIFEST_SUFFIX)
        if NAME_PATTERN.match(name):
            names.add(name)
    found = []
    for name in sorted(names, reverse=True):
        path = directory / name
        manifest, problem = None, ""
        try:
            manifest = manifest_read(path)
        except BackupError as exc:
            problem = str(exc)
        if not path.exists():
            problem = "the backup file is missing"
        found.append(OnDisk(name=name, path=path, file_present=path.exists(), manifest=manifest,
                            problem=problem))
    return found
