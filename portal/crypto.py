"""Encryption of personal data at rest, and keyed blind indexes for looking it up.

Every value is sealed with AES-256-GCM under the newest key in PORTAL_DATA_KEYS. The associated
data binds a ciphertext to its place (table, column, row), so a value copied into another row or
column fails to open. Keys live outside the database (environment or a vault), so a database dump
alone reveals nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = b"\x01"
KEY_ID_SIZE = 4
NONCE_SIZE = 12
HEADER_SIZE = 1 + KEY_ID_SIZE + NONCE_SIZE


class DecryptionError(Exception):
    """A sealed value could not be opened: wrong key, wrong place, or tampered."""


class _Key:
    __slots__ = ("aead", "id", "index_key")

    def __init__(self, raw: bytes):
        self.id = hashlib.sha256(b"portal data key id\x00" + raw).digest()[:KEY_ID_SIZE]
        self.aead = AESGCM(raw)
        # A separate key for blind indexes: an index must never help to open a ciphertext.
        self.index_key = hmac.new(raw, b"portal blind index v1", hashlib.sha256).digest()


def decode_key(text: str) -> bytes:
    """Decode one PORTAL_DATA_KEYS entry (base64url of 32 random bytes)."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a data key is not valid base64url") from exc
    if len(raw) != 32:
        raise ValueError("a data key must be 32 bytes (256 bits)")
    return raw


# Counts the forks this process came through. A forked child inherits its parent's memory, the
# nonce pools with it: parent and child would then draw the same nonces under the same key, and
# AES-GCM with a repeated nonce gives away both plaintexts and the key that authenticates them.
# gunicorn forks its workers from a master that made the app (preload_app), so a pool drawn
# before the fork must never be used after it.
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


class _NonceSource(threading.local):
    """Fresh random nonces, read from the OS in blocks (one system call per 4,096 seals).

    Every nonce is 96 bits straight from the CSPRNG, never reused: a block is consumed once, by
    one thread (the pool is per thread) of one process (a pool from before a fork is dropped).
    """

    BLOCK = NONCE_SIZE * 4096

    def __init__(self):
        self.pool = b""
        self.offset = 0
        self.forks = _forks

    def take(self) -> bytes:
        if self.offset >= len(self.pool) or self.forks != _forks:
            self.pool, self.offset, self.forks = os.urandom(self.BLOCK), 0, _forks
        nonce = self.pool[self.offset : self.offset + NONCE_SIZE]
        self.offset += NONCE_SIZE
        return nonce


class DataVault:
    """Seal and open personal values; bound to the app's PORTAL_DATA_KEYS at start."""

    def __init__(self, keys: list[str] | None = None):
        self._keys: list[_Key] = []
        self._by_id: dict[bytes, _Key] = {}
        self._nonces = _NonceSource()
        if keys:
            self.load_keys(keys)

    def init_app(self, app) -> None:
        self.load_keys(app.config["DATA_KEYS"])
        app.extensions["portal_vault"] = self

    def load_keys(self, keys: list[str]) -> None:
        """Use these keys, newest first: the first seals, all of them open."""
        if not keys:
            raise ValueError("at least one data key is required")
        self._keys = [_Key(decode_key(k)) for k in keys]
        self._by_id = {k.id: k for k in self._keys}

    @property
    def newest_id(self) -> bytes:
        return self._keys[0].id

    def seal(self, value: str | bytes, context: str) -> bytes:
        """Encrypt value for the place named by context (e.g. 'customer.email.<row>')."""
        key = self._keys[0]
        nonce = self._nonces.take()
        header = FORMAT_VERSION + key.id + nonce
        data = value.encode() if isinstance(value, str) else value
        return header + key.aead.encrypt(nonce, data, context.encode() + key.id)

    def open(self, blob: bytes, context: str) -> str:
        """Decrypt a text value sealed for this same context."""
        return self.open_bytes(blob, context).decode()

    def open_bytes(self, blob: bytes, context: str) -> bytes:
        """Decrypt a value sealed for this same context, as bytes."""
        if len(blob) < HEADER_SIZE or blob[:1] != FORMAT_VERSION:
            raise DecryptionError("not a sealed value")
        key_id = bytes(blob[1 : 1 + KEY_ID_SIZE])
        key = self._by_id.get(key_id)
        if key is None:
            raise DecryptionError("sealed with a key that is no longer configured")
        nonce = bytes(blob[1 + KEY_ID_SIZE : HEADER_SIZE])
        try:
            plain = key.aead.decrypt(nonce, bytes(blob[HEADER_SIZE:]), context.encode() + key_id)
        except InvalidTag as exc:
            raise DecryptionError("sealed value does not belong here or was altered") from exc
        return plain

    def is_current(self, blob: bytes) -> bool:
        """True when blob is sealed with the newest key (nothing to rotate)."""
        return bytes(blob[1 : 1 + KEY_ID_SIZE]) == self._keys[0].id

    def blind_index(self, value: str, purpose: str) -> bytes:
        """A keyed digest of a normalised value: find a row without storing the value."""
        return self._index(self._keys[0], value, purpose)

    def blind_indexes(self, value: str, purpose: str) -> list[bytes]:
        """The digest under every configured key: lookups keep working during a key rotation."""
        return [self._index(key, value, purpose) for key in self._keys]

    @staticmethod
    def _index(key: _Key, value: str, purpose: str) -> bytes:
        # OpenSSL's one-shot HMAC: the same digest as hmac.new(...).digest(), in one C call.
        return hmac.digest(key.index_key, purpose.encode() + b"\x00" + value.encode(), "sha256")[
            :16
        ]

    def bulk(self) -> BulkSealer:
        """Seal, open and index many values in a tight loop (a million-row import)."""
        return BulkSealer(self)


class BulkSealer:
    """DataVault's seal, open and blind index for a bulk path, the per-call lookups done once.

    The same format, keys and associated data as DataVault.seal and DataVault.blind_index (a
    test holds them to it); the caller passes each context already encoded. Every nonce is still
    96 fresh bits from the OS, never reused.
    """

    __slots__ = ("_encrypt", "_header", "_inner", "_key_id", "_offset", "_outer", "_pool", "_vault")

    def __init__(self, vault: DataVault):
        key = vault._keys[0]
        self._vault = vault
        self._encrypt = key.aead.encrypt
        self._key_id = key.id
        self._header = FORMAT_VERSION + key.id
        # HMAC-SHA256 as RFC 2104 builds it, its two keyed states hashed once here: each digest
        # then costs two copies of a state (0.6 µs), where hmac.digest looks SHA-256 up by name
        # in OpenSSL on every call (1.6 µs), three times a row. The same digest (a test holds it
        # to a fixed value); the index key is 32 bytes, shorter than SHA-256's 64-byte block.
        block = key.index_key.ljust(64, b"\x00")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        # Its own block of nonces, read from the OS as DataVault's are: one bulk sealer serves
        # one thread (the import's reading thread), and each nonce of a block is used once.
        self._pool = b""
        self._offset = 0

    def seal(self, data: bytes, context: bytes) -> bytes:
        """DataVault.seal(data, context.decode()), for data and context already bytes."""
        offset = self._offset
        if offset >= len(self._pool):
            self._pool, offset = os.urandom(_NonceSource.BLOCK), 0
        self._offset = offset + NONCE_SIZE
        nonce = self._pool[offset : offset + NONCE_SIZE]
        return self._header + nonce + self._encrypt(nonce, data, context + self._key_id)

    def open(self, blob: bytes, context: bytes) -> bytes:
        """DataVault.open_bytes(blob, context.decode()), the context already bytes (no decode
        and encode again, no copies of the blob's parts: a campaign opens a million emails)."""
        if len(blob) < HEADER_SIZE or blob[:1] != FORMAT_VERSION:
            raise DecryptionError("not a sealed value")
        key_id = bytes(blob[1 : 1 + KEY_ID_SIZE])
        key = self._vault._by_id.get(key_id)
        if key is None:
            raise DecryptionError("sealed with a key that is no longer configured")
        try:
            return key.aead.decrypt(
                blob[1 + KEY_ID_SIZE : HEADER_SIZE], blob[HEADER_SIZE:], context + key_id
            )
        except InvalidTag as exc:
            raise DecryptionError("sealed value does not belong here or was altered") from exc

    def index(self, value: str, purpose: bytes) -> bytes:
        """DataVault.blind_index(value, purpose) for a value already normalised; purpose is
        the encoded purpose followed by a NUL byte."""
        inner = self._inner.copy()
        inner.update(purpose + value.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:16]
