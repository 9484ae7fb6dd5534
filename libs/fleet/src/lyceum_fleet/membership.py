"""Who the replicas of a service are: a versioned list of stable addresses that every gateway replica computes
alike, with no shared store. Three sources, chosen by the form of the `*_addresses` setting:

- a static list, `host:port,host:port`, where `{a..b}` expands to the integers a to b:
  `lyceum-predictor-{0..2}.lyceum-predictor-headless.ns.svc.cluster.local:50051` names a StatefulSet's pods
  by their stable DNS names (the form the Helm chart renders);
- `dns:///name:port`: the name's A/AAAA records, re-resolved every few seconds (a Deployment's headless
  Service, whose pods have no stable names: the samplers);
- `file:///path`: one address per line (`#` comments; `{a..b}` expands), re-read when it changes, so
  replicas can be added or removed without restarting the gateway.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
DNS_SCHEME = "dns:///"
FILE_SCHEME = "file://"


def expand_addresses(entries: Iterable[str]) -> list[str]:
    """Each entry with its `{a..b}` ranges expanded (in order; duplicates dropped)."""
    out: list[str] = []
    pending = [entry.strip() for entry in entries if entry.strip()]
    while pending:
        entry = pending.pop(0)
        match = _RANGE.search(entry)
        if match is None:
            if entry not in out:
                out.append(entry)
            continue
        lo, hi = int(match.group(1)), int(match.group(2))
        if hi < lo:
            raise ValueError(f"empty range {match.group(0)} in {entry!r}")
        head, tail = entry[: match.start()], entry[match.end() :]
        pending[0:0] = [f"{head}{i}{tail}" for i in range(lo, hi + 1)]
    return out


def _split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Membership:
    """The replicas at one moment; `version` changes whenever the set does."""

    version: int
    addresses: tuple[str, ...]


class MembershipSource(Protocol):
    """Where the current list of addresses comes from."""

    description: str
    dynamic: bool  # whether `resolve` can change its answer

    async def resolve(self) -> list[str]: ...


class StaticSource:
    dynamic = False

    def __init__(self, addresses: Sequence[str]) -> None:
        self._addresses = expand_addresses(addresses)
        for address in self._addresses:
            _split_host_port(address)
        self.description = ",".join(self._addresses)

    async def resolve(self) -> list[str]:
        return list(self._addresses)


class DnsSource:
    """The A/AAAA records of one name (a headless Service lists its ready pods' IPs)."""

    dynamic = True

    def __init__(self, spec: str) -> None:
        self.host, self.port = _split_host_port(spec.removeprefix(DNS_SCHEME))
        self.description = spec

    async def resolve(self) -> list[str]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM
            )
        except socket.gaierror:
            return []
        hosts = sorted({info[4][0] for info in infos})
        return [f"[{h}]:{self.port}" if ":" in h else f"{h}:{self.port}" for h in hosts]


class FileSource:
    """A file of addresses, one per line; an unreadable file reads as no replicas."""

    dynamic = True

    def __init__(self, spec: str) -> None:
        self.path = Path(spec.removeprefix(FILE_SCHEME))
        self.description = spec

    async def resolve(self) -> list[str]:
        try:
            text = self.path.read_text()
        except OSError:
            return []
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        addresses = expand_addresses(part for line in lines for part in line.split(","))
        return [a for a in addresses if _valid(a)]


def _valid(address: str) -> bool:
    try:
        _split_host_port(address)
    except ValueError:
        return False
    return True


def source_for(addresses: Sequence[str]) -> MembershipSource:
    """The source a `*_addresses` setting names (see the module's docstring)."""
    schemes = [a for a in addresses if a.startswith((DNS_SCHEME, FILE_SCHEME))]
    if schemes and len(addresses) > 1:
        raise ValueError("a dns:/// or file:// membership must be the only entry")
    if schemes:
        spec = schemes[0]
        return DnsSource(spec) if spec.startswith(DNS_SCHEME) else FileSource(spec)
    if not addresses:
        raise ValueError("at least one address is required")
    return StaticSource(addresses)
