"""The encrypted backup format: round trips, keys and rotation, and every way a file can be
damaged or tampered with (no database needed)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import struct

import pytest

from maintenance.backups import crypto
from maintenance.backups.crypto import (
    HEADER_SIZE,
    MAGIC,
    TAG_SIZE,
    BackupCryptoError,
    BackupIntegrityError,
    BackupKeyError,
    decrypt_stream,
    encrypt_stream,
    encrypted_size,
    header_read,
    is_encrypted,
    key_derive,
    key_fingerprint,
    key_generate,
    key_parse,
    keys_from_settings,
)

CHUNK = 64
KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
KEYS = {key_fingerprint(KEY): KEY}


def encrypt(data: bytes, *, key: bytes = KEY, chunk_size: int = CHUNK) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, key=key, chunk_size=chunk_size)
    return out.getvalue()


def decrypt(blob: bytes, *, keys: dict[str, bytes] = KEYS) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, keys=keys)
    return out.getvalue()


def records(blob: bytes, chunk_size: int = CHUNK) -> list[bytes]:
    """The encrypted chunks of a file, as written (ciphertext + tag each)."""
    body, size = blob[HEADER_SIZE:], chunk_size + TAG_SIZE
    return [body[i : i + size] for i in range(0, len(body), size)]


PLAIN = os.urandom(CHUNK * 3 + CHUNK // 2)  # 3.5 chunks
BLOB = encrypt(PLAIN)


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, CHUNK * 3 + CHUNK // 2])
def test_round_trip(size):
    data = os.urandom(size)
    blob = encrypt(data)
    assert len(blob) == encrypted_size(size, CHUNK)
    assert len(records(blob)) == max(1, -(-size // CHUNK))  # an empty input is one empty chunk
    assert decrypt(blob) == data
    if size >= 16:
        assert data[:16] not in blob


def test_round_trip_with_the_default_chunk_size_and_short_reads():
    """A pipe returns fewer bytes than asked: reads are completed, chunks stay fixed-size."""

    class Trickle(io.RawIOBase):
        def __init__(self, data):
            self.inner = io.BytesIO(data)

        def readable(self):
            return True

        def read(self, size=-1):
            return self.inner.read(min(size, 1000) if size >= 0 else 1000)

    data = os.urandom((1 << 20) * 2 + 12345)
    out = io.BytesIO()
    header = encrypt_stream(Trickle(data), out, key=KEY)
    assert header.chunk_size == 1 << 20
    assert len(out.getvalue()) == encrypted_size(len(data))
    back = io.BytesIO()
    decrypt_stream(Trickle(out.getvalue()), back, keys=KEYS)
    assert back.getvalue() == data


def test_streams_in_chunks_never_reading_everything_at_once():
    class Recording(io.BytesIO):
        sizes: list[int]

        def read(self, size=-1):
            self.sizes.append(size)
            return super().read(size)

    src = Recording(os.urandom(CHUNK * 10))
    src.sizes = []
    out = io.BytesIO()
    encrypt_stream(src, out, key=KEY, chunk_size=CHUNK)
    assert src.sizes and all(0 < size <= CHUNK for size in src.sizes)

    blob = Recording(out.getvalue())
    blob.sizes = []
    decrypt_stream(blob, io.BytesIO(), keys=KEYS)
    assert all(0 < size <= max(HEADER_SIZE, CHUNK + TAG_SIZE) for size in blob.sizes)


def test_header_describes_the_file():
    header = header_read(io.BytesIO(BLOB))
    assert (header.version, header.chunk_size) == (1, CHUNK)
    assert header.fingerprint == key_fingerprint(KEY)
    assert len(header.salt) == 32 and len(header.file_id) == 16
    assert header.raw == BLOB[:HEADER_SIZE]
    assert decrypt_stream(io.BytesIO(BLOB), io.BytesIO(), keys=KEYS) == header
    assert is_encrypted(BLOB[:16]) and BLOB.startswith(MAGIC)
    assert not is_encrypted(b"\x28\xb5\x2f\xfd" + b"\0" * 12)  # a zstd frame
    assert not is_encrypted(b"")


def test_two_encryptions_of_the_same_data_differ_in_salt_id_key_and_bytes():
    first, second = encrypt(PLAIN), encrypt(PLAIN)
    a, b = header_read(io.BytesIO(first)), header_read(io.BytesIO(second))
    assert a.salt != b.salt and a.file_id != b.file_id
    assert key_derive(KEY, salt=a.salt, file_id=a.file_id) != key_derive(
        KEY, salt=b.salt, file_id=b.file_id
    )
    assert key_derive(KEY, salt=a.salt, file_id=a.file_id) != KEY
    assert first[HEADER_SIZE:] != second[HEADER_SIZE:]
    # no ciphertext block repeats between the files (no key and nonce pair is ever reused)
    assert not {first[i : i + 16] for i in range(HEADER_SIZE, len(first), 16)} & {
        second[i : i + 16] for i in range(HEADER_SIZE, len(second), 16)
    }
    assert decrypt(first) == decrypt(second) == PLAIN


# --- keys ---------------------------------------------------------------------------------------


def test_wrong_key_is_a_key_error_naming_the_fingerprint_not_the_key():
    with pytest.raises(BackupKeyError) as caught:
        decrypt(BLOB, keys={key_fingerprint(OTHER_KEY): OTHER_KEY})
    message = str(caught.value)
    assert key_fingerprint(KEY) in message and "BACKUP_DECRYPTION_KEYS" in message
    assert base64.b64encode(OTHER_KEY).decode() not in message
    with pytest.raises(BackupKeyError, match="no key is configured"):
        decrypt(BLOB, keys={})


def test_keys_are_found_by_their_real_fingerprint_not_the_dict_label():
    assert decrypt(BLOB, keys={"whatever": OTHER_KEY, "old": KEY}) == PLAIN


def test_rotation_an_old_key_in_backup_decryption_keys_still_restores(settings):
    old, new = key_generate(), key_generate()
    settings.BACKUP_ENCRYPTION_KEY = old
    settings.BACKUP_DECRYPTION_KEYS = []
    old_key, keys = keys_from_settings()
    old_backup = encrypt(PLAIN, key=old_key)

    settings.BACKUP_ENCRYPTION_KEY = new
    settings.BACKUP_DECRYPTION_KEYS = [
        base64.urlsafe_b64encode(key_parse(old)).decode().rstrip("=")
    ]
    new_key, keys = keys_from_settings()
    assert new_key == key_parse(new)
    assert set(keys) == {key_fingerprint(key_parse(new)), key_fingerprint(key_parse(old))}
    assert decrypt(old_backup, keys=keys) == PLAIN
    assert decrypt(encrypt(PLAIN, key=new_key), keys=keys) == PLAIN

    settings.BACKUP_DECRYPTION_KEYS = []  # the old key dropped too soon
    with pytest.raises(BackupKeyError, match=key_fingerprint(old_key)):
        decrypt(old_backup, keys=keys_from_settings()[1])


def test_keys_from_settings_without_a_key_and_with_a_comma_string(settings):
    settings.BACKUP_ENCRYPTION_KEY = ""
    settings.BACKUP_DECRYPTION_KEYS = []
    assert keys_from_settings() == (None, {})
    one, two = key_generate(), key_generate()
    settings.BACKUP_DECRYPTION_KEYS = f"{one}, {two}"
    key, keys = keys_from_settings()
    assert key is None and len(keys) == 2


def test_keys_from_settings_names_the_bad_setting_without_echoing_it(settings):
    settings.BACKUP_ENCRYPTION_KEY = "c2VjcmV0LXRvby1zaG9ydA=="
    settings.BACKUP_DECRYPTION_KEYS = []
    with pytest.raises(BackupKeyError, match="^BACKUP_ENCRYPTION_KEY: ") as caught:
        keys_from_settings()
    assert "c2VjcmV0" not in str(caught.value)
    settings.BACKUP_ENCRYPTION_KEY = key_generate()
    settings.BACKUP_DECRYPTION_KEYS = [key_generate(), "hunter2!"]
    with pytest.raises(BackupKeyError, match="BACKUP_DECRYPTION_KEYS, key 2 of 2") as caught:
        keys_from_settings()
    assert "hunter2" not in str(caught.value)


def test_key_parse_accepts_standard_and_urlsafe_with_or_without_padding():
    key = bytes([0xFB, 0xFF] * 16)  # encodes with '+' and '/' (or '-' and '_')
    for text in (
        base64.b64encode(key).decode(),
        base64.b64encode(key).decode().rstrip("="),
        base64.urlsafe_b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
        f"  {base64.b64encode(key).decode()}\n",
    ):
        assert key_parse(text) == key
    generated = key_generate()
    assert len(generated) == 44 and len(key_parse(generated)) == 32
    assert key_generate() != generated


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        base64.b64encode(b"k" * 31).decode(),  # short
        base64.b64encode(b"k" * 33).decode(),  # long
        base64.b64encode(b"k" * 16).decode(),  # an AES-128 key
        "ab" * 32,  # 64 hex digits: valid base64 characters, 48 bytes
        "not base64 at all, not even close!!!!!!!!!!",
        base64.b64encode(b"k" * 32).decode()[:-2] + "*=",
        base64.b64encode(b"k" * 32).decode() + "==",  # too much padding
        "a" * 41,  # an impossible base64 length
        "ééééééééééééééééééééééééééééééééééééééééééé",
    ],
)
def test_key_parse_rejects_bad_keys_with_a_sentence_that_does_not_contain_them(text):
    with pytest.raises(BackupKeyError) as caught:
        key_parse(text)
    message = str(caught.value)
    assert message.startswith("The backup key ") and message.endswith(".")
    assert "32" in message
    if text.strip():
        assert text.strip() not in message
        assert text.strip()[:8] not in message
    # nothing chained either (a decoder's own error could quote the input)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_fingerprint_is_stable_one_way_and_distinct():
    assert key_fingerprint(KEY) == key_fingerprint(bytes(KEY))
    assert len(key_fingerprint(KEY)) == 64 and int(key_fingerprint(KEY), 16) >= 0
    assert key_fingerprint(KEY) != key_fingerprint(OTHER_KEY)
    assert KEY.hex() not in key_fingerprint(KEY)
    with pytest.raises(BackupKeyError):
        key_fingerprint(b"short")
    with pytest.raises(BackupKeyError):
        encrypt(b"data", key=b"short")


# --- integrity ----------------------------------------------------------------------------------


def test_every_single_byte_flip_anywhere_in_the_file_is_detected():
    for position in range(len(BLOB)):
        damaged = bytearray(BLOB)
        damaged[position] ^= 0x01
        with pytest.raises(BackupIntegrityError):
            decrypt(bytes(damaged))


def test_a_flip_in_a_chunk_or_a_tag_names_the_chunk():
    for index in range(4):
        start = HEADER_SIZE + index * (CHUNK + TAG_SIZE)
        tag_end = min(start + CHUNK + TAG_SIZE, len(BLOB))
        for position in (start, tag_end - 1):  # the first ciphertext byte, the last tag byte
            damaged = bytearray(BLOB)
            damaged[position] ^= 0x80
            with pytest.raises(BackupIntegrityError, match=f"at chunk {index}:"):
                decrypt(bytes(damaged))


def test_a_damaged_header_says_so():
    damaged = bytearray(BLOB)
    damaged[HEADER_SIZE - 20] ^= 0x01  # inside the key fingerprint
    with pytest.raises(BackupIntegrityError, match="header is damaged"):
        decrypt(bytes(damaged))


def test_a_header_altered_with_a_recomputed_checksum_fails_authentication():
    """An attacker can fix the unkeyed checksum; every chunk still binds the header."""
    fields = bytearray(BLOB[: HEADER_SIZE - 16])
    fields[20] ^= 0x01  # the salt
    forged = bytes(fields) + hashlib.sha256(bytes(fields)).digest()[:16]
    with pytest.raises(BackupIntegrityError, match="at chunk 0:"):
        decrypt(forged + BLOB[HEADER_SIZE:])

    fields = bytearray(BLOB[: HEADER_SIZE - 16])
    fields[61:93] = bytes.fromhex(key_fingerprint(OTHER_KEY))  # claims another key
    forged = bytes(fields) + hashlib.sha256(bytes(fields)).digest()[:16]
    both = {key_fingerprint(KEY): KEY, key_fingerprint(OTHER_KEY): OTHER_KEY}
    with pytest.raises(BackupIntegrityError, match="at chunk 0:"):
        decrypt(forged + BLOB[HEADER_SIZE:], keys=both)
    with pytest.raises(BackupKeyError):
        decrypt(forged + BLOB[HEADER_SIZE:])

    fields = bytearray(BLOB[: HEADER_SIZE - 16])
    struct.pack_into(">I", fields, 9, CHUNK * 2)  # the chunk size
    forged = bytes(fields) + hashlib.sha256(bytes(fields)).digest()[:16]
    with pytest.raises(BackupIntegrityError):
        decrypt(forged + BLOB[HEADER_SIZE:])


def test_truncation_at_every_length_is_detected():
    for length in range(len(BLOB)):
        with pytest.raises(BackupIntegrityError):
            decrypt(BLOB[:length])


def test_truncation_at_each_chunk_boundary_is_detected():
    """The cut file ends in a whole, valid chunk that was not written as the last one."""
    chunks = records(BLOB)
    assert len(chunks) == 4
    for kept in range(len(chunks)):
        cut = BLOB[:HEADER_SIZE] + b"".join(chunks[:kept])
        expected = "right after its header" if kept == 0 else f"at chunk {kept - 1}:"
        with pytest.raises(BackupIntegrityError, match=expected):
            decrypt(cut)


def test_a_file_whose_length_is_a_multiple_of_the_chunk_cannot_lose_its_last_chunk():
    blob = encrypt(os.urandom(CHUNK * 3))
    chunks = records(blob)
    assert len(chunks) == 3 and all(len(chunk) == CHUNK + TAG_SIZE for chunk in chunks)
    with pytest.raises(BackupIntegrityError, match="at chunk 1:"):
        decrypt(blob[:HEADER_SIZE] + b"".join(chunks[:2]))


def test_swapping_two_chunks_is_detected():
    chunks = records(BLOB)
    for i, j in ((0, 1), (1, 2), (0, 2)):
        swapped = list(chunks)
        swapped[i], swapped[j] = swapped[j], swapped[i]
        with pytest.raises(BackupIntegrityError, match=f"at chunk {i}:"):
            decrypt(BLOB[:HEADER_SIZE] + b"".join(swapped))


def test_splicing_a_chunk_from_another_file_with_the_same_key_is_detected():
    other = encrypt(PLAIN)  # same key, same data, same chunk size: only salt and id differ
    mine, theirs = records(BLOB), records(other)
    for index in range(len(mine)):
        spliced = list(mine)
        spliced[index] = theirs[index]
        with pytest.raises(BackupIntegrityError, match=f"at chunk {index}:"):
            decrypt(BLOB[:HEADER_SIZE] + b"".join(spliced))
    # another file's header in front of this file's chunks
    with pytest.raises(BackupIntegrityError, match="at chunk 0:"):
        decrypt(other[:HEADER_SIZE] + BLOB[HEADER_SIZE:])


def test_appending_a_chunk_or_bytes_is_detected():
    full = encrypt(os.urandom(CHUNK * 2))
    chunks = records(full)
    for extra in (chunks[0], chunks[-1], records(encrypt(os.urandom(CHUNK * 3)))[2], b"\0"):
        with pytest.raises(BackupIntegrityError):
            decrypt(full + extra)
    with pytest.raises(BackupIntegrityError):
        decrypt(BLOB + records(BLOB)[0])


def test_a_chunk_dropped_from_the_middle_is_detected():
    chunks = records(BLOB)
    with pytest.raises(BackupIntegrityError, match="at chunk 1:"):
        decrypt(BLOB[:HEADER_SIZE] + chunks[0] + b"".join(chunks[2:]))


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"", "not an encrypted pastq backup"),
        (b"\x28\xb5\x2f\xfd" + os.urandom(200), "not an encrypted pastq backup"),
        (b"-- PostgreSQL database dump\n", "not an encrypted pastq backup"),
        (MAGIC + b"\x01\x00", "ends inside its header"),
        (BLOB[:HEADER_SIZE], "right after its header"),
    ],
)
def test_files_that_are_not_backups_are_integrity_errors(blob, message):
    with pytest.raises(BackupIntegrityError, match=message):
        decrypt(blob)


def test_a_newer_format_version_is_refused_with_a_sentence():
    damaged = bytearray(BLOB)
    damaged[len(MAGIC)] = 2
    with pytest.raises(BackupIntegrityError, match="format version 2"):
        header_read(io.BytesIO(bytes(damaged)))


def test_errors_share_a_base():
    assert issubclass(BackupKeyError, BackupCryptoError)
    assert issubclass(BackupIntegrityError, BackupCryptoError)
    assert crypto.HEADER_SIZE == 109
