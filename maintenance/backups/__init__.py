"""Database backups you can restore: create, verify, restore, retention, off-site copies.

`crypto` is the encrypted file format (AES-256-GCM over fixed-size chunks, a key of its own for
each file derived with HKDF from the master key); the service modules build on it.
"""
