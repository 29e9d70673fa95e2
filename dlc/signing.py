"""Artifact signatures: Ed25519 over the manifest, which holds the sha256 of every file.

The hashes in a manifest catch corruption, not an attacker who can write the folder: they
would rewrite the manifest too. A signature made with a private key kept offline can only
come from its holder. `dlc keygen` writes the pair (KEY, KEY.pub), `dlc sign` or `dlc
compile --sign KEY` writes ARTIFACT/signature.json, and every command that loads an
artifact's native code with `--trust KEY.pub` refuses one that is unsigned, signed by
another key or changed since, before anything of it is loaded (Artifact.load checks the
signature first, then the hashes against the signed manifest).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from pathlib import Path

from dlc.errors import ArtifactIntegrityError, DlcError, InputFileError

SIGNATURE = "signature.json"  # beside the manifest
ALGORITHM = "ed25519"


def generate_key(path: Path) -> Path:
    """Writes a new private key to `path` (readable by its owner only) and its public key to PATH.pub."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from dlc.fileio import atomic_path

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    public_path = public_key_path(path)
    with atomic_path(public_path) as tmp:
        tmp.write_bytes(public)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)  # 0600 from the start, and kept
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(private)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return public_path


def public_key_path(private: Path) -> Path:
    return private.with_name(private.name + ".pub")


def sign(manifest: Path, key_path: Path) -> str:
    """Signs an artifact's `manifest` file with the private key at `key_path`; returns the key's fingerprint."""
    from dlc.fileio import write_json

    key = load_private_key(key_path)
    write_json(manifest.parent / SIGNATURE, {"algorithm": ALGORITHM, "key": fingerprint(key.public_key()),
                                             "signature": base64.b64encode(key.sign(manifest.read_bytes())).decode()})
    return fingerprint(key.public_key())


def check(manifest: Path, trusted_path: Path, content: bytes) -> str:
    """Raises unless `content`, the bytes read from an artifact's `manifest` file, carries a valid signature by
    the public key at `trusted_path`.

    Returns the key's fingerprint. The caller parses those same bytes (the file is read
    once, so it cannot be swapped between the check and its use) and then checks the files
    against the hashes they sign.
    """
    from cryptography.exceptions import InvalidSignature

    trusted = load_public_key(trusted_path)
    artifact = manifest.parent
    try:
        record = json.loads((artifact / SIGNATURE).read_text())
        signature = base64.b64decode(record["signature"], validate=True)
    except FileNotFoundError:
        raise ArtifactIntegrityError(f"artifact {artifact} is not signed, and --trust takes only artifacts signed by "
                                     f"{trusted_path}; sign it with `dlc sign {artifact} --key KEY`") from None
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise ArtifactIntegrityError(f"artifact {artifact} has an unreadable {SIGNATURE} ({type(e).__name__}); "
                                     "sign it again with `dlc sign`") from None
    try:
        trusted.verify(signature, content)
    except InvalidSignature:
        raise ArtifactIntegrityError(f"artifact {artifact} is not signed by the key in {trusted_path} (signed by "
                                     "another key, or changed since it was signed); it was not loaded") from None
    return fingerprint(trusted)


def load_private_key(path: Path):
    """The Ed25519 private key in `path`, or a one-line error."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = _load_key(path, private=True)
    if not isinstance(key, Ed25519PrivateKey):
        raise DlcError(f"{path} is not an Ed25519 private key; make one with `dlc keygen -o KEY`")
    return key


def load_public_key(path: Path):
    """The Ed25519 public key in `path`, or a one-line error."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = _load_key(path, private=False)
    if not isinstance(key, Ed25519PublicKey):
        raise DlcError(f"{path} is not an Ed25519 public key; pass the KEY.pub that `dlc keygen` wrote")
    return key


def fingerprint(public_key) -> str:
    """The first 16 hex digits of the sha256 of the raw public key."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _load_key(path: Path, private: bool):
    from cryptography.hazmat.primitives import serialization

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"key not found: {path} (make a pair with `dlc keygen -o KEY`)")
    try:
        data = path.read_bytes()
        if private:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        kind = "private key" if private else "public key"
        raise DlcError(f"{path} is not a PEM {kind} ({' '.join(str(e).split())[:120]}); make a pair with "
                       "`dlc keygen -o KEY`") from None
