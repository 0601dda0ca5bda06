"""A throwaway PKI for TLS tests: a CA, a server certificate for 127.0.0.1 /
localhost and a client certificate, all signed by the CA.

Built with the ``cryptography`` package when it is installed, else with the
``openssl`` command."""

from __future__ import annotations

import datetime
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting it must fail


def make_pki(directory: Path) -> Pki:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return _with_openssl(directory)
    return _with_cryptography(directory)


def _pki(directory: Path) -> Pki:
    return Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.pem",
    )


def _with_cryptography(directory: Path) -> Pki:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki = _pki(directory)
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name | None,
        issuer_key: ec.EllipticCurvePrivateKey | None,
        extensions: list[tuple[x509.ExtensionType, bool]],
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer or name(subject))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key or key, hashes.SHA256())

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    ca_ext: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        ),
    ]
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("Coda test CA", ca_key, None, None, ca_ext)
    pki.ca.write_bytes(pem(ca_cert))
    other_key = ec.generate_private_key(ec.SECP256R1())
    pki.other_ca.write_bytes(pem(certificate("Other CA", other_key, None, None, ca_ext)))
    Extensions = list[tuple[x509.ExtensionType, bool]]
    leaves: list[tuple[Path, Path, str, Extensions]] = [
        (
            pki.server_cert,
            pki.server_key,
            "localhost",
            [
                (
                    x509.SubjectAlternativeName(
                        [
                            x509.DNSName("localhost"),
                            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        ]
                    ),
                    False,
                ),
                (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            ],
        ),
        (
            pki.client_cert,
            pki.client_key,
            "coda-client",
            [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
        ),
    ]
    for cert_path, key_path, subject, extensions in leaves:
        key = ec.generate_private_key(ec.SECP256R1())
        write_key(key, key_path)
        leaf = certificate(
            subject,
            key,
            ca_cert.subject,
            ca_key,
            [(x509.BasicConstraints(ca=False, path_length=None), True), *extensions],
        )
        cert_path.write_bytes(pem(leaf))
    return pki


def _with_openssl(directory: Path) -> Pki:
    pki = _pki(directory)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    for ca, subject in ((pki.ca, "Coda test CA"), (pki.other_ca, "Other CA")):
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(ca.with_suffix(".key")), "-out", str(ca),
            "-days", "1", "-subj", f"/CN={subject}",
        )  # fmt: skip
    leaves = [
        (pki.server_cert, pki.server_key, "localhost",
         "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        (pki.client_cert, pki.client_key, "coda-client", "extendedKeyUsage=clientAuth\n"),
    ]  # fmt: skip
    for cert, key, subject, extensions in leaves:
        request = cert.with_suffix(".csr")
        ext_file = cert.with_suffix(".ext")
        ext_file.write_text(extensions)
        openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(request), "-subj", f"/CN={subject}",
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", str(request), "-CA", str(pki.ca),
            "-CAkey", str(pki.ca.with_suffix(".key")), "-CAcreateserial",
            "-out", str(cert), "-days", "1", "-extfile", str(ext_file),
        )  # fmt: skip
    return pki
