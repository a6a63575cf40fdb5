"""The OPC UA server's certificate and key (``controller.opcua.pki``): made once and kept,
the key readable by its owner only, a new certificate (same key) when the server is reached
by another name, and a new key when the old one cannot be read."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from cryptography import x509

from controller.opcua.pki import application_uri, pki_dir, server_identity


def _sans(path: Path) -> tuple[list[str], list[str]]:
    cert = x509.load_der_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (san.get_values_for_type(x509.UniformResourceIdentifier),
            san.get_values_for_type(x509.DNSName))


def test_made_once_and_kept(tmp_path: Path) -> None:
    first = server_identity("Tube_furnace-1", "labpc", tmp_path)
    cert, key = first.certificate.read_bytes(), first.private_key.read_bytes()
    assert first.application_uri == application_uri("Tube_furnace-1") == (
        "urn:furnace:Tube_furnace-1")
    assert _sans(first.certificate) == ([first.application_uri], ["labpc"])
    again = server_identity("Tube_furnace-1", "labpc", tmp_path)
    assert again == first
    assert (again.certificate.read_bytes(), again.private_key.read_bytes()) == (cert, key)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "Tube_furnace-1-server-cert.der", "Tube_furnace-1-server-key.pem"]


def test_names_that_differ_only_in_unusual_characters_keep_their_own_keys(
        tmp_path: Path) -> None:
    """Names a file name cannot hold as they are ("Ofen 1" and "Ofen-1", or two names in
    another script) still get a certificate and key each."""
    names = ["Ofen 1", "Ofen-1", "炉一", "炉二"]
    made = [server_identity(name, "labpc", tmp_path) for name in names]
    assert len({m.private_key for m in made}) == len(names)
    assert len({m.application_uri for m in made}) == len(names)
    assert len({m.private_key.read_bytes() for m in made}) == len(names)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_the_key_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    ident = server_identity("s", "labpc", tmp_path)
    assert stat.S_IMODE(os.stat(ident.private_key).st_mode) == 0o600


def test_another_host_name_gets_a_new_certificate_for_the_same_key(tmp_path: Path) -> None:
    first = server_identity("s", "labpc", tmp_path)
    key, cert = first.private_key.read_bytes(), first.certificate.read_bytes()
    moved = server_identity("s", "labpc.example.org", tmp_path)
    assert moved.private_key.read_bytes() == key
    assert moved.certificate.read_bytes() != cert
    assert _sans(moved.certificate)[1] == ["labpc.example.org"]


def test_an_unreadable_key_is_replaced_with_its_certificate(tmp_path: Path) -> None:
    first = server_identity("s", "labpc", tmp_path)
    cert = first.certificate.read_bytes()
    first.private_key.write_text("not a key", encoding="utf-8")
    again = server_identity("s", "labpc", tmp_path)
    assert again.private_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert again.certificate.read_bytes() != cert


def test_the_folder_is_the_environments_when_set(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FURNACE_OPCUA_PKI_DIR", str(tmp_path / "pki"))
    assert pki_dir() == tmp_path / "pki"
    monkeypatch.delenv("FURNACE_OPCUA_PKI_DIR")
    assert pki_dir().name == "opcua"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_a_kept_key_readable_by_others_is_made_private_again(tmp_path: Path) -> None:
    """A key found readable by the group or others (restored from a backup, copied) was
    used as it was: the server's secret stayed world-readable, start after start."""
    ident = server_identity("s", "labpc", tmp_path)
    key = ident.private_key.read_bytes()
    ident.private_key.chmod(0o644)
    again = server_identity("s", "labpc", tmp_path)
    assert again.private_key.read_bytes() == key  # the same key, kept
    assert stat.S_IMODE(os.stat(again.private_key).st_mode) == 0o600
