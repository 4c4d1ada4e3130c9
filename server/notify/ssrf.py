"""Where a webhook may go: http or https, to a host whose every address is public, unless the
tenant's allowlist names it. The check resolves the name itself and the request is then sent
to the address that was checked, so a name can't resolve to something else in between."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from server.domain.errors import InvalidInput

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
"""Cloud metadata services (also covered by link-local and private, named for the message)."""


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    address: IpAddress


class Refused(InvalidInput):
    """The URL points where webhooks must not go; nothing was sent."""


def _forbidden(address: IpAddress) -> str | None:
    if address in METADATA:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _forbidden(address.ipv4_mapped)
    for test, what in (
        (address.is_loopback, "a loopback address"), (address.is_link_local, "a link-local address"),
        (address.is_private, "a private address"), (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"), (address.is_unspecified, "an unspecified address"),
    ):  # fmt: skip
        if test:
            return what
    return None


def allowed(host: str, address: IpAddress, allowlist: list[str]) -> bool:
    """An allowlist entry is a host name, an address or a network (CIDR)."""
    for entry in allowlist:
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == host.lower():
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


async def check(url: str, allowlist: list[str]) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Refused(f"webhook URLs must be http or https, not {parts.scheme or 'none'!r}", field="url")
    host = parts.hostname
    if not host:
        raise Refused("the webhook URL has no host", field="url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("the webhook URL has a bad port", field="url") from None
    if parts.username or parts.password:
        raise Refused("credentials in a webhook URL are not allowed; use the signature", field="url")
    try:
        literal: IpAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Refused(f"cannot resolve {host!r}: {exc}", field="url") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos))
    for address in addresses:  # every address must pass: the client may use any of them
        why = _forbidden(address)
        if why and not allowed(host, address, allowlist):
            raise Refused(
                f"{host!r} resolves to {address}, {why}; add it to the tenant's webhook allowlist if it is meant",
                field="url",
            )
    return Target(url, parts.scheme, host, port, addresses[0])
