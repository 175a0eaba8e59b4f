"""The encrypted backup file format: AES-256-GCM over fixed-size chunks, streamed.

A backup is compressed first (zstd, by the caller) and then, when `BACKUP_ENCRYPTION_KEY` is
set, encrypted here. Each file gets a key of its own, derived with HKDF-SHA256 from the master
key and a random 32-byte salt kept in the file's header, so the chunk counter can serve as the
nonce without a nonce ever repeating under one key, whatever number of backups a key makes.

Layout, version 1 (integers big-endian)::

    offset  size  field
         0     8  MAGIC, b"PASTQBKE"
         8     1  format version, 1
         9     4  chunk size: plaintext bytes per chunk (every chunk but the last is full)
        13    32  salt: random; HKDF salt for this file's key
        45    16  file id: random; bound into the key and into every chunk
        61    32  key fingerprint: HMAC-SHA256(master key, FINGERPRINT_LABEL)
        93    16  header check: SHA-256(bytes 0..92)[:16], so a damaged header reads as
                  damaged rather than as "no key matches"
       109     -  chunks, one after another, nothing between them:
                  AES-256-GCM(file key, nonce, plaintext chunk, aad) = ciphertext || 16-byte tag

    file key = HKDF-SHA256(ikm=master key, salt=salt, info=KEY_LABEL || file id, length=32)
    nonce    = chunk index as 12 bytes (96 bits), 0, 1, 2, ...
    aad      = file id (16) || chunk index (8) || last-chunk flag (1) || SHA-256(header) (32)

There is always at least one chunk: an empty input is one empty last chunk, so a file cut right
after its header is caught. The reader knows a chunk is the last one only because the end of
the file follows it, and authentication fails unless the writer marked that same chunk as the
last; so truncation (at a chunk boundary too), appended chunks or bytes, reordered chunks,
chunks spliced in from another backup (another file key and file id), header tampering and any
bit flip all raise `BackupIntegrityError`, before the chunk concerned yields any plaintext.
(A header deliberately rewritten to name another key, checksum and all, finds no key for that
fingerprint: `BackupKeyError`, which is the truth of it.)

Memory stays constant whatever the size: two chunks at a time (one read ahead to see the end).

Contract for callers: `decrypt_stream` writes each chunk's plaintext to `dst` as soon as that
chunk has authenticated, but the file as a whole (is it complete? is anything appended?) is
authenticated only when `decrypt_stream` returns. So `dst` must be a temporary file that nothing
reads until `decrypt_stream` has returned without raising; on an exception, delete it. In short,
no plaintext is used before the whole file authenticated.

Keys are 32 random bytes written as base64 (`key_generate`). Old keys stay usable for restore
through `BACKUP_DECRYPTION_KEYS`: each file names its key by fingerprint, so rotating a key is
setting a new `BACKUP_ENCRYPTION_KEY` and moving the old one to `BACKUP_DECRYPTION_KEYS`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

__all__ = [
    "CHUNK_SIZE_MAX",
    "DEFAULT_CHUNK_SIZE",
    "HEADER_SIZE",
    "KEY_SIZE",
    "MAGIC",
    "TAG_SIZE",
    "VERSION",
    "BackupCryptoError",
    "BackupIntegrityError",
    "BackupKeyError",
    "Header",
    "decrypt_stream",
    "encrypt_stream",
    "encrypted_size",
    "header_read",
    "is_encrypted",
    "key_derive",
    "key_fingerprint",
    "key_generate",
    "key_parse",
    "keys_from_settings",
]


class BackupCryptoError(Exception):
    """Base of every error about an encrypted backup; its message is a sentence for operators."""


class BackupKeyError(BackupCryptoError):
    """No key given matches the file's fingerprint, or a key is malformed. Never echoes a key."""


class BackupIntegrityError(BackupCryptoError):
    """The file is not a pastq backup, or was damaged, truncated, reordered, spliced or altered."""


MAGIC = b"PASTQBKE"  # "pastq backup, encrypted"
VERSION = 1
KEY_SIZE = 32  # AES-256
SALT_SIZE = 32
FILE_ID_SIZE = 16
FINGERPRINT_SIZE = 32
CHECK_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
DEFAULT_CHUNK_SIZE = 1 << 20
CHUNK_SIZE_MAX = 1 << 26  # a header may not make a reader allocate more than this per chunk

KEY_LABEL = b"pastq backup v1: file key\x00"
FINGERPRINT_LABEL = b"pastq backup v1: key fingerprint"

_FIELDS = struct.Struct(f">8sBI{SALT_SIZE}s{FILE_ID_SIZE}s{FINGERPRINT_SIZE}s")
HEADER_SIZE = _FIELDS.size + CHECK_SIZE  # 109
_AAD = struct.Struct(f">{FILE_ID_SIZE}sQB32s")

_KEY_FORMAT = (
    "it must be 32 random bytes written as base64 (44 characters; "
    "`manage.py backup_db keygen` prints a new one)"
)


@dataclass(frozen=True)
class Header:
    """What a backup's header says. `fingerprint` is hex; `raw` is the header's exact bytes."""

    version: int
    chunk_size: int
    salt: bytes
    file_id: bytes
    fingerprint: str
    raw: bytes = field(default=b"", repr=False, compare=False)

    @property
    def size(self) -> int:
        return len(self.raw) or HEADER_SIZE


# --- keys ---------------------------------------------------------------------------------------


def key_parse(text: str) -> bytes:
    """The 32-byte key in `text`: base64, standard or URL-safe alphabet, padding optional.

    Raises BackupKeyError with a sentence that never contains the text itself.
    """
    value = (text or "").strip()
    if not value:
        raise BackupKeyError(f"The backup key is empty: {_KEY_FORMAT}.")
    body = value.rstrip("=").replace("-", "+").replace("_", "/")
    if len(body) % 4 == 1 or len(value) - len(value.rstrip("=")) > 2:
        raise BackupKeyError(f"The backup key is not valid base64: {_KEY_FORMAT}.")
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BackupKeyError(f"The backup key is not valid base64: {_KEY_FORMAT}.") from None
    if len(key) != KEY_SIZE:
        raise BackupKeyError(
            f"The backup key decodes to {len(key)} bytes, not {KEY_SIZE}: {_KEY_FORMAT}."
        )
    return key


def key_generate() -> str:
    """A new random key as base64 text, for BACKUP_ENCRYPTION_KEY."""
    return base64.b64encode(os.urandom(KEY_SIZE)).decode("ascii")


def key_fingerprint(key: bytes) -> str:
    """A one-way id of a master key (hex HMAC-SHA256 of a fixed label), safe in manifests."""
    _key_check(key)
    return hmac.new(key, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()


def keys_from_settings() -> tuple[bytes | None, dict[str, bytes]]:
    """(the key new backups are encrypted with, or None; {fingerprint: key} for reading them).

    The reading keys are BACKUP_ENCRYPTION_KEY and every key in BACKUP_DECRYPTION_KEYS (a list,
    or a comma-separated string). A malformed key raises BackupKeyError naming the setting.
    """
    encryption_text = getattr(settings, "BACKUP_ENCRYPTION_KEY", "") or ""
    decryption_texts = getattr(settings, "BACKUP_DECRYPTION_KEYS", []) or []
    if isinstance(decryption_texts, str):
        decryption_texts = [part for part in decryption_texts.split(",") if part.strip()]

    encryption_key = None
    keys: dict[str, bytes] = {}
    if encryption_text.strip():
        try:
            encryption_key = key_parse(encryption_text)
        except BackupKeyError as error:
            raise BackupKeyError(f"BACKUP_ENCRYPTION_KEY: {error}") from None
        keys[key_fingerprint(encryption_key)] = encryption_key
    for position, text in enumerate(decryption_texts, start=1):
        try:
            key = key_parse(text)
        except BackupKeyError as error:
            raise BackupKeyError(
                f"BACKUP_DECRYPTION_KEYS, key {position} of {len(decryption_texts)}: {error}"
            ) from None
        keys.setdefault(key_fingerprint(key), key)
    return encryption_key, keys


def key_derive(key: bytes, *, salt: bytes, file_id: bytes) -> bytes:
    """The file key: HKDF-SHA256 of the master key, with the file's salt, bound to its id."""
    _key_check(key)
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=KEY_LABEL + file_id
    ).derive(key)


def _key_check(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise BackupKeyError(f"A backup key must be {KEY_SIZE} bytes (parse it with key_parse).")


# --- header -------------------------------------------------------------------------------------


def is_encrypted(head: bytes) -> bool:
    """Whether a file starting with `head` (its first bytes, at least len(MAGIC)) is ours."""
    return bytes(head[: len(MAGIC)]) == MAGIC


def _header_pack(*, chunk_size: int, salt: bytes, file_id: bytes, fingerprint: bytes) -> bytes:
    fields = _FIELDS.pack(MAGIC, VERSION, chunk_size, salt, file_id, fingerprint)
    return fields + hashlib.sha256(fields).digest()[:CHECK_SIZE]


def header_read(src: BinaryIO) -> Header:
    """Read and check the header at the start of `src`, leaving `src` at the first chunk.

    Raises BackupIntegrityError if the file is not an encrypted pastq backup or its header is
    damaged. (The header is authenticated too, by every chunk, during decryption.)
    """
    raw = _read_exact(src, HEADER_SIZE)
    if not is_encrypted(raw):
        raise BackupIntegrityError(
            "This file is not an encrypted pastq backup: it does not start with the signature."
        )
    if len(raw) < HEADER_SIZE:
        raise BackupIntegrityError(
            f"This backup is truncated: it ends inside its header ({len(raw)} of "
            f"{HEADER_SIZE} bytes)."
        )
    _magic, version, chunk_size, salt, file_id, fingerprint = _FIELDS.unpack_from(raw)
    if version != VERSION:
        raise BackupIntegrityError(
            f"This backup uses file format version {version}, and this code reads version "
            f"{VERSION}: the file is damaged, or was written by a newer pastq."
        )
    if not hmac.compare_digest(
        hashlib.sha256(raw[: _FIELDS.size]).digest()[:CHECK_SIZE], raw[_FIELDS.size :]
    ):
        raise BackupIntegrityError("This backup's header is damaged: its checksum does not match.")
    if not 1 <= chunk_size <= CHUNK_SIZE_MAX:
        raise BackupIntegrityError(
            f"This backup's header is invalid: chunk size {chunk_size} is out of range."
        )
    return Header(
        version=version,
        chunk_size=chunk_size,
        salt=salt,
        file_id=file_id,
        fingerprint=fingerprint.hex(),
        raw=raw,
    )


# --- streams ------------------------------------------------------------------------------------


def _read_exact(src: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the stream (pipes may return short reads)."""
    data = src.read(size)
    if data is None:
        data = b""
    if len(data) == size or not data:
        return bytes(data)
    parts = bytearray(data)
    while len(parts) < size:
        more = src.read(size - len(parts))
        if not more:
            break
        parts += more
    return bytes(parts)


def _nonce(index: int) -> bytes:
    return index.to_bytes(NONCE_SIZE, "big")


def _aad(header: Header, header_digest: bytes, index: int, last: bool) -> bytes:
    return _AAD.pack(header.file_id, index, 1 if last else 0, header_digest)


def encrypt_stream(
    src: BinaryIO, dst: BinaryIO, *, key: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Header:
    """Encrypt everything `src` yields into `dst` (header, then chunks) under the master `key`.

    Streams in constant memory. Returns the header written (its fingerprint is the key's).
    """
    _key_check(key)
    if not 1 <= chunk_size <= CHUNK_SIZE_MAX:
        raise ValueError(f"chunk_size must be between 1 and {CHUNK_SIZE_MAX} bytes.")
    salt, file_id = os.urandom(SALT_SIZE), os.urandom(FILE_ID_SIZE)
    fingerprint = hmac.new(key, FINGERPRINT_LABEL, hashlib.sha256).digest()
    raw = _header_pack(chunk_size=chunk_size, salt=salt, file_id=file_id, fingerprint=fingerprint)
    header = Header(
        version=VERSION,
        chunk_size=chunk_size,
        salt=salt,
        file_id=file_id,
        fingerprint=fingerprint.hex(),
        raw=raw,
    )
    header_digest = hashlib.sha256(raw).digest()
    cipher = AESGCM(key_derive(key, salt=salt, file_id=file_id))
    dst.write(raw)

    index = 0
    current = _read_exact(src, chunk_size)
    while True:
        if len(current) < chunk_size:
            following, last = b"", True
        else:
            following = _read_exact(src, chunk_size)
            last = not following
        dst.write(cipher.encrypt(_nonce(index), current, _aad(header, header_digest, index, last)))
        if last:
            return header
        current, index = following, index + 1


def decrypt_stream(src: BinaryIO, dst: BinaryIO, *, keys: dict[str, bytes]) -> Header:
    """Decrypt the backup in `src` into `dst`, with the key in `keys` its header names.

    `keys` maps fingerprints to master keys (see keys_from_settings); the key is found by the
    fingerprint each key actually has. Raises BackupKeyError when no key matches and
    BackupIntegrityError when anything in the file fails authentication.

    Each chunk reaches `dst` only once it has authenticated, but the file as a whole is
    authenticated only when this returns: `dst` must be a temporary file that is used only
    after this returned without raising, and deleted otherwise. No plaintext is used before
    the whole file authenticated.
    """
    header = header_read(src)
    by_fingerprint = {key_fingerprint(key): key for key in keys.values()}
    key = by_fingerprint.get(header.fingerprint)
    if key is None:
        if not by_fingerprint:
            raise BackupKeyError(
                f"This backup is encrypted (key fingerprint {header.fingerprint}) and no key "
                "is configured: set BACKUP_ENCRYPTION_KEY, or add the key to "
                "BACKUP_DECRYPTION_KEYS."
            )
        raise BackupKeyError(
            f"None of the {len(by_fingerprint)} configured backup key(s) opens this backup: "
            f"it was encrypted with the key whose fingerprint is {header.fingerprint}; add "
            "that key to BACKUP_DECRYPTION_KEYS."
        )

    header_digest = hashlib.sha256(header.raw).digest()
    cipher = AESGCM(key_derive(key, salt=header.salt, file_id=header.file_id))
    record_size = header.chunk_size + TAG_SIZE

    index = 0
    current = _read_exact(src, record_size)
    if not current:
        raise BackupIntegrityError(
            "This backup is truncated: it ends right after its header, with no data."
        )
    while True:
        if len(current) < record_size:
            following, last = b"", True
        else:
            following = _read_exact(src, record_size)
            last = not following
        if len(current) < TAG_SIZE:
            raise BackupIntegrityError(
                f"This backup is damaged or truncated: chunk {index} is {len(current)} bytes, "
                f"shorter than its {TAG_SIZE}-byte tag."
            )
        try:
            plaintext = cipher.decrypt(
                _nonce(index), current, _aad(header, header_digest, index, last)
            )
        except InvalidTag:
            raise BackupIntegrityError(
                f"This backup failed authentication at chunk {index}: the file was damaged, "
                "truncated, extended, reordered, spliced from another backup, or altered."
            ) from None
        dst.write(plaintext)
        if last:
            return header
        current, index = following, index + 1


def encrypted_size(plain_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """The size of the encrypted file for `plain_size` bytes of input."""
    chunks = max(1, -(-plain_size // chunk_size))
    return HEADER_SIZE + plain_size + chunks * TAG_SIZE
