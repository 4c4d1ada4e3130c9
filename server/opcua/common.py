"""What the OPC UA client and server share: status codes and quality, times, certificates."""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from asyncua import ua
from asyncua.crypto import cert_gen, uacrypto
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIdNames, ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import ExtendedKeyUsageOID

from server.domain.namespace import DataType
from server.domain.quality import Quality

SERVER_APP_URI = "urn:iiot-server:opcua:server"
CLIENT_APP_URI = "urn:iiot-server:opcua:client"
CERT_DAYS = 3650
"""A self-signed application certificate lasts ten years; it is regenerated when it expires."""

VARIANTS: dict[DataType, ua.VariantType] = {
    DataType.DOUBLE: ua.VariantType.Double,
    DataType.FLOAT: ua.VariantType.Float,
    DataType.INT32: ua.VariantType.Int32,
    DataType.INT64: ua.VariantType.Int64,
    DataType.UINT16: ua.VariantType.UInt16,
    DataType.BOOLEAN: ua.VariantType.Boolean,
}
DATA_TYPES: dict[ua.VariantType, DataType] = {v: k for k, v in VARIANTS.items()}


__all__ = [
    "AttributeIds", "ObjectIdNames", "ObjectIds", "StatusCodes", "UaError", "UaStatusCodeError",
]  # fmt: skip
"""asyncua's `ua` does not re-export these for a strict type checker: import them from here."""


def quiet_asyncua() -> None:
    """asyncua logs every request at INFO: keep it to warnings unless configured otherwise."""
    logger = logging.getLogger("asyncua")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


def std(identifier: int) -> ua.NodeId:
    """A node of the standard namespace 0 (Objects folder, HasProperty...)."""
    return ua.NodeId(ua.Int32(identifier))


def bad(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def quality_of(status: ua.StatusCode | None) -> Quality:
    """OPC UA severity (top two bits of a StatusCode) as the historian's quality."""
    if status is None:
        return Quality.GOOD
    severity = (int(status.value) >> 30) & 0x3
    if severity == 0:
        return Quality.GOOD
    return Quality.UNCERTAIN if severity == 1 else Quality.BAD


def status_of(quality: Quality) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(quality.opcua_status))


def epoch(stamp: datetime | None) -> float | None:
    """asyncua gives aware UTC datetimes; a naive one is UTC too (as everywhere in the server)."""
    if stamp is None:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    value = stamp.timestamp()
    return value if value > 0 else None  # DateTime.MinValue means "not set"


def to_datetime(ts: float) -> ua.DateTime:
    """asyncua annotates timestamps with its DateTime subclass but takes any aware datetime."""
    return cast(ua.DateTime, datetime.fromtimestamp(ts, UTC))


def utcnow() -> ua.DateTime:
    return cast(ua.DateTime, datetime.now(UTC))


def boolean(value: bool) -> ua.Boolean:
    return cast(ua.Boolean, value)


def number(raw: object) -> float | None:
    """A wire value as the historian's float, or None when it is not a finite number."""
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, int | float):
        value = float(raw)
        return value if math.isfinite(value) else None
    return None


def variant(value: float, data_type: DataType | None) -> ua.Variant:
    """A stored float as the tag's declared OPC UA type (the historian stores doubles)."""
    vtype = VARIANTS.get(data_type or DataType.DOUBLE, ua.VariantType.Double)
    if vtype is ua.VariantType.Boolean:
        return ua.Variant(bool(value), vtype)
    if vtype in (ua.VariantType.Double, ua.VariantType.Float):
        return ua.Variant(float(value), vtype)
    return ua.Variant(int(round(value)), vtype)


@dataclass(frozen=True, slots=True)
class Credentials:
    """An application instance certificate and its private key, always a matching pair."""

    cert_der: bytes
    key_der: bytes
    """PKCS#8 DER: asyncua reads key and certificate given as bytes as DER."""
    bundle: Path
    """`<name>.pem`: key and certificate in one file (0600), replaced atomically as a pair."""
    cert_file: Path
    """`<name>-cert.der`: the certificate alone, for peers to trust."""


def ensure_certificate(directory: Path, name: str, app_uri: str, *, server: bool) -> Credentials:
    """A self-signed application certificate and key for `app_uri`, created in `directory` on
    first use and again when expired or made for another URI. Key and certificate live in one
    file replaced atomically, so processes or tasks creating it at once never read a key of
    one pair with the certificate of another. Blocking (RSA): call in a thread."""
    directory.mkdir(parents=True, exist_ok=True)
    bundle, cert_file = directory / f"{name}.pem", directory / f"{name}-cert.der"
    try:
        data = bundle.read_bytes()
        cert = x509.load_pem_x509_certificate(data)
        key = load_pem_private_key(data, None)
        pair = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == key.public_key(
        ).public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
        if pair and not uacrypto.check_certificate(cert, app_uri):  # False means "no problem found"
            return _publish(cert, key, bundle, cert_file)
    except (OSError, ValueError):
        pass
    key = cert_gen.generate_private_key()
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(app_uri), x509.DNSName(socket.gethostname())]
    if server:
        names.append(x509.DNSName("localhost"))
    usage = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usage.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    cert = cert_gen.generate_self_signed_app_certificate(
        key, f"iiot-server {name}", {}, names, extended=usage, days=CERT_DAYS
    )
    data = cert_gen.dump_private_key_as_pem(key) + cert.public_bytes(Encoding.PEM)
    _write_atomic(bundle, data, 0o600)
    return _publish(cert, key, bundle, cert_file)


def _publish(cert: x509.Certificate, key: PrivateKeyTypes, bundle: Path, cert_file: Path) -> Credentials:
    der = cert.public_bytes(Encoding.DER)
    if not cert_file.is_file() or cert_file.read_bytes() != der:
        _write_atomic(cert_file, der, 0o644)
    key_der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    return Credentials(der, key_der, bundle, cert_file)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
