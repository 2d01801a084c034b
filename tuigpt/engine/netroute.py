"""Which network interface gloo uses: the one that routes to ``master_addr``.

gloo, left alone, binds to the address this host's *name* resolves to, and falls back to the loopback
address when the name does not resolve. On two laptops that is the classic silent failure: a hostname
mapped to 127.0.1.1 (Debian's /etc/hosts), a VPN or Docker bridge picked instead of the cable, and the
run either cannot connect or crawls (gloo#335: a 258 ms collective took 24 s on the wrong interface).
So before joining the group a gloo rank asks the kernel which local address it would use to reach
``master_addr`` (a UDP ``connect()`` sends nothing, it only resolves the route, like ``ip route get``),
maps that address to its interface (psutil) and sets ``GLOO_SOCKET_IFNAME`` to it. An interface the user
named in ``GLOO_SOCKET_IFNAME`` is kept, after checking it exists. A missing or wrong route is one
UserError naming the interface and the fix, before any collective can hang.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import MutableMapping

import psutil

from tuigpt.run.errors import UserError

ENV = "GLOO_SOCKET_IFNAME"


@dataclass(frozen=True)
class Route:
    """The interface this rank's gloo traffic goes through, and why that one."""

    interface: str
    address: str  # this host's address on it ("" when GLOO_SOCKET_IFNAME was given)
    master: str  # master_addr as given
    route_interface: str | None  # the interface the kernel routes master_addr through
    by_user: bool  # GLOO_SOCKET_IFNAME was set before tuigpt looked

    def describe(self) -> str:
        """One phrase: 'tnv0 (10.77.0.1), the interface routing to master_addr 10.77.0.1'."""
        where = f"{self.interface} ({self.address})" if self.address else self.interface
        if not self.by_user:
            return f"{where}, the interface routing to master_addr {self.master}"
        if self.route_interface is not None and self.route_interface not in self.interface.split(","):
            return (f"{where}, named by {ENV}; note that the route to master_addr {self.master} goes through "
                    f"{self.route_interface}")
        return f"{where}, named by {ENV}"


def interfaces() -> dict[str, list[str]]:
    """Every interface of this host (this network namespace) and its IPv4/IPv6 addresses."""
    out: dict[str, list[str]] = {}
    for name, addrs in psutil.net_if_addrs().items():
        out[name] = [a.address.split("%")[0] for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6)]
    return out


def _listing() -> str:
    found = interfaces()
    return ", ".join(f"{name} {'/'.join(addrs) or 'no address'}" for name, addrs in sorted(found.items())) or "none"


def source_address(master: str, port: int) -> tuple[str, str]:
    """(master's IP, the local address the kernel would send from to reach it). UserError when it cannot."""
    try:
        infos = socket.getaddrinfo(master, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise UserError(f"master_addr {master!r} does not resolve on this host ({exc.strerror}): give torchrun "
                        f"node 0's IP address (--master_addr=192.168.x.y); interfaces here: {_listing()}") from None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(sockaddr)  # UDP: resolves the route, sends nothing
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            hint = " (no interface here is on its network and there is no default route)" \
                if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH) else ""
            raise UserError(f"no route from this host to master_addr {master} ({why}){hint}: check that it is node "
                            f"0's address and that this machine is on the same network (`ip route get {sockaddr[0]}`),"
                            f" or name the interface with {ENV}=<name>; interfaces here: {_listing()}") from None
        return str(sockaddr[0]), str(probe.getsockname()[0])


def choose(master: str, port: int, multi_node: bool, environ: MutableMapping[str, str] | None = None) -> Route:
    """Pick (or check) gloo's interface for reaching ``master`` and set GLOO_SOCKET_IFNAME in ``environ``.

    ``multi_node``: the ranks are on several hosts, so a loopback route is wrong (the other host cannot
    reach 127.x), not merely local."""
    env = os.environ if environ is None else environ
    found = interfaces()
    named = env.get(ENV, "").strip()
    if named:
        missing = [n for n in named.split(",") if n not in found]
        if missing:
            raise UserError(f"{ENV}={named} names no interface of this host ({', '.join(missing)} missing): unset "
                            f"it and tuigpt picks the interface routing to master_addr, or name one of: "
                            f"{_listing()}")
        try:
            route_iface: str | None = _interface_of(source_address(master, port)[1], found)
        except UserError:  # the user chose: their interface may reach it where the routing table does not
            route_iface = None
        return Route(named, "", master, route_iface, by_user=True)
    master_ip, source = source_address(master, port)
    iface = _interface_of(source, found)
    if iface is None:
        raise UserError(f"the route to master_addr {master} leaves from {source}, which no interface here holds: "
                        f"name the interface with {ENV}=<name>; interfaces here: {_listing()}")
    if multi_node and ipaddress.ip_address(source).is_loopback:
        raise UserError(f"master_addr {master} is {master_ip} on this host, a loopback address, but the run spans "
                        f"several hosts: gloo would listen on {iface}, which the other host cannot reach. Give "
                        f"torchrun node 0's network address (--master_addr=192.168.x.y; a hostname that /etc/hosts "
                        f"maps to 127.0.1.1 does this); interfaces here: {_listing()}")
    stats = psutil.net_if_stats().get(iface)
    if stats is not None and not stats.isup:
        raise UserError(f"interface {iface}, which routes to master_addr {master}, is down: bring it up "
                        f"(`ip link set {iface} up`, or reconnect the cable/Wi-Fi) or name another with {ENV}=<name>")
    env[ENV] = iface
    return Route(iface, source, master, iface, by_user=False)


def _interface_of(address: str, found: dict[str, list[str]]) -> str | None:
    for name, addrs in found.items():
        if address in addrs:
            return name
    return None
