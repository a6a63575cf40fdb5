"""The OPC UA server's own certificate and private key: made once per station and kept, so
that a client that pinned the certificate still trusts the server after a restart, and
made again only when it has expired or no longer names the server.

With a certificate the server encrypts what must not cross the network in clear: a user's
password is encrypted with the server's public key even on the endpoint without security,
and clients may choose signed or signed-and-encrypted channels (Basic256Sha256). The key
file is written readable by its owner only (POSIX mode 0600; on Windows the user's own
profile folder is private already).

Where: ``$FURNACE_OPCUA_PKI_DIR`` if set, else platformdirs' user data folder + ``opcua``
(``%LOCALAPPDATA%\\furnace\\opcua`` on Windows, ``~/.local/share/furnace/opcua`` on Linux).
Not here: the server itself (``server``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from asyncua.crypto.cert_gen import (
    dump_private_key_as_pem,
    generate_private_key,
    generate_self_signed_app_certificate,
)
from asyncua.crypto.uacrypto import check_certificate
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = ["PKI_DIR_ENV", "ServerIdentity", "application_uri", "pki_dir", "server_identity"]

logger = logging.getLogger(__name__)

PKI_DIR_ENV: Final = "FURNACE_OPCUA_PKI_DIR"
VALID_DAYS: Final = 3650  # a lab server's certificate: renewed when it expires
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """Where the server's certificate (DER) and private key (PEM) are, and the application
    URI the certificate names."""

    certificate: Path
    private_key: Path
    application_uri: str


def pki_dir() -> Path:
    """The folder the servers' certificates and keys are kept in."""
    chosen = os.environ.get(PKI_DIR_ENV)
    if chosen:
        return Path(chosen)
    import platformdirs  # only when the default is asked for

    return Path(platformdirs.user_data_dir("furnace", appauthor=False)) / "opcua"


def application_uri(station_name: str) -> str:
    """The OPC UA application URI of ``station_name``'s server."""
    return f"urn:furnace:{_slug(station_name)}"


def server_identity(station_name: str, host_name: str, folder: Path | None = None
                    ) -> ServerIdentity:
    """The certificate and key of ``station_name``'s server reached as ``host_name``, made
    now if there are none, or if the certificate has expired or names another application
    or host (a new key too if the key is missing or unreadable). Raises ``OSError`` if the
    folder or the files cannot be written."""
    folder = folder if folder is not None else pki_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stem = _slug(station_name)
    cert_path = folder / f"{stem}-server-cert.der"
    key_path = folder / f"{stem}-server-key.pem"
    uri = application_uri(station_name)
    key = _load_key(key_path)
    if key is None:
        key = generate_private_key()
        _write(key_path, dump_private_key_as_pem(key), private=True)
        cert = None
    else:
        _keep_private(key_path)
        cert = _load_cert(cert_path)
    if cert is None or cert.public_key() != key.public_key() or check_certificate(
            cert, uri, host_name):
        cert = generate_self_signed_app_certificate(
            key, f"furnace {station_name}", {"organizationName": "furnace"},
            [x509.UniformResourceIdentifier(uri), x509.DNSName(host_name)],
            extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            days=VALID_DAYS)
        _write(cert_path, cert.public_bytes(Encoding.DER), private=False)
    return ServerIdentity(cert_path, key_path, uri)


def _slug(name: str) -> str:
    """``name`` as a file name and URI part: itself if it is plain already, else its plain
    characters and a short hash of the whole name (two names that differ only in the
    characters left out must not share a certificate and key)."""
    plain = _UNSAFE.sub("-", name).strip("-.")
    if plain == name:
        return plain
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{plain or 'station'}-{digest}"


def _load_key(path: Path) -> RSAPrivateKey | None:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):  # missing, or not a key we can read
        return None
    return key if isinstance(key, RSAPrivateKey) else None


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _keep_private(path: Path) -> None:
    """Make the kept key ``path`` readable by its owner only again, if it is not (copied,
    restored from a backup, or written by hand): a server's key others can read is no
    secret."""
    if os.name != "posix":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning("%s was readable by others (mode %o): made readable by its owner "
                       "only", path, mode)
        path.chmod(0o600)


def _write(path: Path, data: bytes, *, private: bool) -> None:
    """Replace ``path`` whole with ``data`` (written beside it, then renamed); a private
    file is created readable by its owner only."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a leftover keeps its mode: start afresh
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
