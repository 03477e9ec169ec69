"""A software security key (ES256, built with `cryptography`) that answers the portal's WebAuthn
options as a browser and a FIDO2 key would: no network, no browser.

It makes the attestationObject ("none"), authenticatorData and clientDataJSON itself, so a test
can also make the answers a real key would never give: another origin, an old counter, a
replayed answer.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers.encode_cbor import encode_cbor

from tests.conftest import BASE_URL

UP, UV, AT = 0x01, 0x04, 0x40  # user present, user verified, attested credential data


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def options_in(page) -> dict:
    """The WebAuthn options a page hands its script (the button's data-options)."""
    found = re.search(r'data-options="([^"]*)"', page.get_data(as_text=True))
    assert found, "the page offers no security key"
    return json.loads(html.unescape(found[1]))


class SoftKey:
    """One credential on a software authenticator, with its own signature counter."""

    def __init__(self, *, counts: bool = True) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.counts = counts  # a key that keeps no counter always says 0
        self.sign_count = 0

    def _cose_public_key(self) -> bytes:
        numbers = self.private.public_key().public_numbers()
        return encode_cbor(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        ).encode()

    def register(self, options: dict, *, origin: str = BASE_URL) -> str:
        """The answer to navigator.credentials.create(options), as the page's script sends it."""
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        auth_data = (
            hashlib.sha256(options["rp"]["id"].encode()).digest()
            + bytes([UP | UV | AT])
            + struct.pack(">I", self.sign_count)
            + bytes(16)  # AAGUID: none given, as with attestation "none"
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose_public_key()
        )
        attestation = encode_cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "attestationObject": b64url(attestation),
                    "transports": ["usb"],
                },
                "clientExtensionResults": {},
            }
        )

    def sign(
        self,
        options: dict,
        *,
        origin: str = BASE_URL,
        rp_id: str | None = None,
        counter: int | None = None,
    ) -> str:
        """The answer to navigator.credentials.get(options); `counter` forces the count a copied
        key would give."""
        if counter is None:
            if self.counts:
                self.sign_count += 1
            counter = self.sign_count
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        auth_data = (
            hashlib.sha256((rp_id or options["rpId"]).encode()).digest()
            + bytes([UP | UV])
            + struct.pack(">I", counter)
        )
        signature = self.private.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                },
                "clientExtensionResults": {},
            }
        )
