"""A software passkey for Flask-client tests: WebAuthn answers made with a real EC key."""

import base64
import hashlib
import json
import os
import struct

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec


def b64(data: bytes) -> str:
    """base64url without padding, as WebAuthn's JSON uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    """The bytes of a base64url string."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftPasskey:
    """One P-256 credential that answers registration and authentication ceremonies."""

    def __init__(self, rp_id: str, origin: str):
        self.rp_id, self.origin = rp_id, origin
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(16)
        self.count = 0
        self.user_handle = b""

    def _client_data(self, kind: str, challenge: str) -> bytes:
        """clientDataJSON for a ceremony."""
        return json.dumps({"type": kind, "challenge": challenge, "origin": self.origin,
                           "crossOrigin": False}).encode()

    def _auth_data(self, flags: int, extra: bytes = b"") -> bytes:
        """Authenticator data: rp id hash, flags, counter (and attested data)."""
        self.count += 1
        return (hashlib.sha256(self.rp_id.encode()).digest() + bytes([flags])
                + struct.pack(">I", self.count) + extra)

    def register(self, options: dict, user_verified: bool = True) -> str:
        """The JSON a browser posts after navigator.credentials.create()."""
        numbers = self.key.public_key().public_numbers()
        cose = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                            -3: numbers.y.to_bytes(32, "big")})
        attested = bytes(16) + struct.pack(">H", len(self.credential_id)) + \
            self.credential_id + cose
        flags = 0x41 | (0x04 if user_verified else 0)
        self.user_handle = unb64(options["user"]["id"])
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {},
                                   "authData": self._auth_data(flags, attested)})
        return json.dumps({
            "id": b64(self.credential_id), "rawId": b64(self.credential_id),
            "type": "public-key", "clientExtensionResults": {},
            "response": {"clientDataJSON": b64(self._client_data("webauthn.create",
                                                                 options["challenge"])),
                         "attestationObject": b64(attestation)}})

    def sign_in(self, options: dict, user_verified: bool = True) -> str:
        """The JSON a browser posts after navigator.credentials.get()."""
        client_data = self._client_data("webauthn.get", options["challenge"])
        auth_data = self._auth_data(0x01 | (0x04 if user_verified else 0))
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(),
                                  ec.ECDSA(hashes.SHA256()))
        return json.dumps({
            "id": b64(self.credential_id), "rawId": b64(self.credential_id),
            "type": "public-key", "clientExtensionResults": {},
            "response": {"clientDataJSON": b64(client_data), "authenticatorData": b64(auth_data),
                         "signature": b64(signature), "userHandle": b64(self.user_handle)}})
