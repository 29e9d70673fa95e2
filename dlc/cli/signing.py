from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlc.cli._common import console

TRUST_HELP = ("Load only artifacts signed by this public key (from `dlc keygen`), checked before any of their "
              "code is loaded.")


def keygen(
    output: Annotated[Path, typer.Option("--output", "-o", help="The private key file; the public key goes to "
                                         "OUTPUT.pub.", show_default=False)],
    force: Annotated[bool, typer.Option(help="Replace existing key files.")] = False,
):
    """Make an Ed25519 key pair for signing artifacts (keep the private key offline)."""
    from dlc import signing
    from dlc.fileio import check_output

    check_output(output, force)
    check_output(signing.public_key_path(output), force)
    public = signing.generate_key(output)
    console.print(f"wrote {output} (private: sign with `dlc sign ARTIFACT --key {output}`) and {public} (public: "
                  f"pass it to --trust)")


def sign(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory to sign.")],
    key: Annotated[Path, typer.Option(help="Private key from `dlc keygen`.", show_default=False)],
):
    """Sign an artifact: its manifest, which holds every file's sha256."""
    from dlc import signing
    from dlc.artifact import MANIFEST, Artifact

    Artifact.load(artifact)  # what is signed must be intact
    fingerprint = signing.sign(artifact / MANIFEST, key)
    console.print(f"signed {artifact} with key {fingerprint} ({artifact / signing.SIGNATURE})")


def verify(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory to check.")],
    trust: Annotated[Path, typer.Option(help="The public key it must be signed with.", show_default=False)],
):
    """Check an artifact's signature and every file's sha256, without loading its code."""
    from dlc.artifact import Artifact

    Artifact.load(artifact, trust=trust)
    console.print(f"{artifact}: signed by the key in {trust}, and every file matches its signed sha256")


def require_key(trust: Path | None) -> None:
    """Fails at once on a --trust file that is not a public key, rather than on every artifact."""
    if trust is not None:
        from dlc import signing

        signing.load_public_key(trust)
