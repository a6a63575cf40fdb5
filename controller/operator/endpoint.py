"""The physical endpoint of a station's furnace controller, as one comparable text key.

Not here: locking (``lock``) or connecting (the bus). Two spellings of one instrument
(``localhost`` and ``127.0.0.1``; ``/dev/serial/by-id/…`` and ``/dev/ttyUSB0``; ``com3`` and
``COM3`` on Windows) give one key, so the station lock cannot be side-stepped by a renamed
or edited station file (docs/decisions/0006-station-lock.md).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from collections.abc import Callable, Sequence

from controller.recipe.station import BusConfig

__all__ = ["LOOPBACK", "Resolver", "endpoint_key"]

LOOPBACK = "127.0.0.1"

Resolver = Callable[[str, int], Sequence[str]]
"""``resolve(host, port)`` -> the host's IP addresses as text (empty if unknown)."""


def endpoint_key(bus: BusConfig, unit: int, *, resolve: Resolver | None = None,
                 windows: bool | None = None) -> str:
    """The lock key of the instrument at ``unit`` on ``bus``, e.g. ``tcp 127.0.0.1:5020
    unit 1`` or ``serial /dev/ttyUSB0 unit 1``.

    A TCP host name is resolved (``resolve``, default ``socket.getaddrinfo``; blocking, so
    call before anything moves) and the smallest address kept; every loopback or
    unspecified address, and ``localhost``, becomes ``127.0.0.1``; an unresolvable name
    stays as the lower-case name. A serial device has its symlinks resolved (POSIX) or its
    ``\\\\.\\`` prefix dropped and is upper-cased (Windows, ``windows`` default: this
    OS). Raises ``ValueError`` for the in-process simulator, which has no endpoint.
    """
    resolve = resolve if resolve is not None else _resolve
    windows = sys.platform == "win32" if windows is None else windows
    if bus.kind == "tcp":
        return f"tcp {_host_key(bus.host, bus.port, resolve)}:{bus.port} unit {unit}"
    if bus.kind == "rtu":
        return f"{_serial_key(bus.device, resolve, windows)} unit {unit}"
    raise ValueError("the in-process simulator has no endpoint to lock")


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return []
    return [str(info[4][0]) for info in infos]


def _host_key(host: str, port: int, resolve: Resolver) -> str:
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    name = name.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return LOOPBACK
    literal = _ip_text(name)
    if literal is not None:
        return literal
    addresses = sorted({a for a in map(_ip_text, resolve(name, port)) if a is not None})
    return addresses[0] if addresses else name


def _ip_text(text: str) -> str | None:
    """Canonical text of an IP address (IPv4-mapped IPv6 as IPv4, any loopback or
    unspecified address as 127.0.0.1, IPv6 in brackets), or None if not an address."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:
        return LOOPBACK
    return f"[{ip.compressed}]" if ip.version == 6 else ip.compressed


_NET_URL = re.compile(r"^(?:socket|rfc2217)://(?P<host>\[[^\]]*\]|[^:/?#]*):(?P<port>\d+)",
                      re.IGNORECASE)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _serial_key(device: str, resolve: Resolver, windows: bool) -> str:
    text = device.strip()
    net = _NET_URL.match(text)
    if net and 0 < int(net["port"]) < 65536:  # RTU framing over TCP: a network endpoint
        port = int(net["port"])
        return f"tcp {_host_key(net['host'], port, resolve)}:{port}"
    if _URL.match(text):
        return f"url {text.split('?', 1)[0]}"
    if windows:  # device names are case-insensitive; \\.\COM10 and COM10 are one port
        name = text.replace("/", "\\")
        if name.startswith("\\\\.\\"):
            name = name[4:]
        return f"serial {name.rstrip(':').upper()}"
    return f"serial {os.path.realpath(text)}"  # /dev/serial/by-id/... -> /dev/ttyUSB0
