"""DKIM keys with `cryptography`: RSA-2048 (default) and Ed25519 (RFC 8463), and their TXT values.

The private key lives in a Secret (PEM, PKCS#8) that the handler creates once and never
regenerates; everything here is pure apart from key generation.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

Algorithm = Literal["rsa", "ed25519"]
RSA_BITS = 2048
PRIVATE_KEY = "private.pem"
ALGORITHM_KEY = "algorithm"


def generate_private_pem(algorithm: Algorithm) -> bytes:
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        if algorithm == "rsa"
        else (ed25519.Ed25519PrivateKey.generate())
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_b64(private_pem: bytes) -> tuple[Algorithm, str]:
    """(algorithm, the `p=` value): RSA as base64 DER SubjectPublicKeyInfo, Ed25519 as the raw
    32-byte key in base64 (RFC 8463 §4.2)."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return "rsa", base64.b64encode(der).decode()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "ed25519", base64.b64encode(raw).decode()
    raise ValueError("unsupported DKIM key type (want RSA or Ed25519)")


def txt_value(algorithm: Algorithm, public_b64: str) -> str:
    return f"v=DKIM1; k={algorithm}; p={public_b64}"


def fingerprint(public_b64: str) -> str:
    return hashlib.sha256(public_b64.encode()).hexdigest()


def secret_name(cutover: str, selector: str) -> str:
    name = f"{cutover}-dkim-{selector}".replace("_", "-").replace(".", "-")
    if len(name) > 253:
        name = name[:240] + "-" + hashlib.sha256(name.encode()).hexdigest()[:10]
    return name
