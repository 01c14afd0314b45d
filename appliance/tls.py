"""TLS for the LAN API: the certificate in use, its fingerprint, and the server's SSL context.

`tls.mode = self-signed` makes a certificate for the box's host names and addresses at the
first start (kept in `<state_dir>/tls/`, renewed when it nears its end or no longer names the
box); `files` uses the administrator's certificate and key, read again on SIGHUP. The SHA-256
fingerprint is what clients of a self-signed box compare or pin.

Imports config, errors and `cryptography`; nothing from api, engine or the daemon.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import psutil
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.config import Config
from appliance.errors import ConfigError

log = logging.getLogger("appliance.tls")

VALID_DAYS = 825
"""Apple's platforms refuse server certificates valid for longer, even self-signed ones."""
RENEW_DAYS = 30


@dataclass(frozen=True)
class Certificate:
    """The certificate the LAN API presents."""

    cert_file: Path
    key_file: Path
    fingerprint: str
    """SHA-256 of the DER certificate, `AB:CD:…` as browsers and `openssl x509 -fingerprint`
    show it."""
    not_after: datetime.datetime
    names: tuple[str, ...]
    """Host names and addresses it is valid for."""
    self_signed: bool


def fingerprint(certificate: x509.Certificate) -> str:
    digest = certificate.fingerprint(hashes.SHA256())
    return ":".join(f"{byte:02X}" for byte in digest)


def box_names() -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """(DNS names, addresses) clients may use to reach this box."""
    host = socket.gethostname()
    names = [host, f"{host.split('.')[0]}.local", "localhost"]
    fqdn = socket.getfqdn()
    if fqdn not in names and "." in fqdn:
        names.append(fqdn)
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = ipaddress.ip_address(entry.address.split("%")[0])
            if not address.is_link_local and address not in addresses:
                addresses.append(address)
    for loopback in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")):
        if loopback not in addresses:
            addresses.append(loopback)
    return list(dict.fromkeys(names)), addresses


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write atomically: a half-written key or certificate must never be served."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def make_self_signed(cert_file: Path, key_file: Path) -> None:
    """A new EC P-256 key and a certificate for every name and address of this box."""
    names, addresses = box_names()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AI appliance (self-signed)"),
    ])  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    usage = x509.KeyUsage(
        digital_signature=True, key_cert_sign=True, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    alternative = [x509.DNSName(name) for name in names] + [x509.IPAddress(a) for a in addresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        # Its own issuer: clients that trust this one file trust the box (as `openssl req -x509`).
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(key_file, key_pem, 0o600)
    _write_private(cert_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def _read(cert_file: Path, key_file: Path, *, self_signed: bool) -> Certificate:
    try:
        data = cert_file.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the TLS certificate {cert_file}: {exc.strerror} (tls.cert_file)"
        ) from None
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigError(
            f"{cert_file} is not a PEM certificate (tls.cert_file; expected "
            "'-----BEGIN CERTIFICATE-----')"
        ) from None
    names: list[str] = []
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*san.get_values_for_type(x509.DNSName)]
        names += [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    return Certificate(
        cert_file, key_file, fingerprint(certificate), certificate.not_valid_after_utc,
        tuple(names), self_signed,
    )  # fmt: skip


def _still_good(current: Certificate) -> bool:
    """A self-signed certificate is kept while valid for a month more and naming the box."""
    left = current.not_after - datetime.datetime.now(datetime.UTC)
    names, addresses = box_names()
    wanted = {*names, *(str(a) for a in addresses)}
    return left > datetime.timedelta(days=RENEW_DAYS) and wanted <= set(current.names)


def certificate_for(config: Config) -> Certificate | None:
    """The certificate `config.tls` asks for (made first when self-signed); None when off."""
    settings = config.tls
    if settings.mode == "off":
        return None
    if settings.mode == "files":
        assert settings.cert_file and settings.key_file  # the settings validator saw to it
        return _read(settings.cert_file, settings.key_file, self_signed=False)
    folder = config.state_dir / "tls"
    cert_file, key_file = folder / "self-signed.crt", folder / "self-signed.key"
    if cert_file.exists() and key_file.exists():
        current = _read(cert_file, key_file, self_signed=True)
        if _still_good(current):
            return current
        log.warning("renewing the self-signed certificate (expiring, or the box's names changed)")
    try:
        make_self_signed(cert_file, key_file)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the self-signed certificate in {folder}: {exc.strerror}"
        ) from None
    made = _read(cert_file, key_file, self_signed=True)
    log.info("made a self-signed TLS certificate, SHA-256 fingerprint %s", made.fingerprint)
    return made


def server_context(certificate: Certificate) -> ssl.SSLContext:
    """A TLS 1.2+ server context presenting `certificate`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_into(context, certificate)
    return context


def load_into(context: ssl.SSLContext, certificate: Certificate) -> None:
    """Make `context` present `certificate` (new connections only); checks the pair first."""
    try:
        # A scratch context first: a bad pair must leave the running one untouched.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
            certificate.cert_file, certificate.key_file
        )
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"cannot use the TLS certificate {certificate.cert_file} with the key "
            f"{certificate.key_file}: {getattr(exc, 'strerror', None) or exc} (a key that "
            "does not match the certificate, or a key with a passphrase?)"
        ) from None
    context.load_cert_chain(certificate.cert_file, certificate.key_file)


class TlsState:
    """The LAN listener's SSL context and the certificate it presents; reloadable."""

    def __init__(self, config: Config, certificate: Certificate) -> None:
        self.config = config
        self.certificate = certificate
        self.context = server_context(certificate)

    def reload(self) -> Certificate:
        """Read the certificate again (SIGHUP); on error the old one stays and it raises."""
        fresh = certificate_for(self.config)
        assert fresh is not None
        load_into(self.context, fresh)
        self.certificate = fresh
        return fresh
