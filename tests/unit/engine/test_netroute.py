"""gloo's interface: the one that routes to master_addr, or the user's, checked; a bad route is one line."""

from __future__ import annotations

import pytest

from tuigpt.engine import netroute
from tuigpt.run.errors import UserError


def loopback_name() -> str:
    return next(name for name, addrs in netroute.interfaces().items() if "127.0.0.1" in addrs)


def test_the_interface_routing_to_master_is_chosen_and_given_to_gloo() -> None:
    env: dict[str, str] = {}
    route = netroute.choose("127.0.0.1", 29500, multi_node=False, environ=env)
    assert route.interface == loopback_name() and route.address == "127.0.0.1" and not route.by_user
    assert env == {"GLOO_SOCKET_IFNAME": route.interface}
    assert route.describe() == f"{route.interface} (127.0.0.1), the interface routing to master_addr 127.0.0.1"


def test_a_loopback_master_across_hosts_is_refused_with_the_fix() -> None:
    # the /etc/hosts trap: a host name that maps to 127.0.1.1 on node 1 while node 0 is another machine
    env: dict[str, str] = {}
    with pytest.raises(UserError) as caught:
        netroute.choose("127.0.1.1", 29500, multi_node=True, environ=env)
    message = str(caught.value)
    assert "loopback address, but the run spans several hosts" in message
    assert "--master_addr=" in message and "interfaces here: " in message and loopback_name() in message
    assert env == {}  # nothing set on the way out


def test_a_name_that_does_not_resolve_says_so() -> None:
    with pytest.raises(UserError, match=r"master_addr 'no-such-host\.invalid' does not resolve on this host"):
        netroute.choose("no-such-host.invalid", 29500, multi_node=True, environ={})


def test_the_users_interface_is_kept_after_checking_it_exists() -> None:
    lo = loopback_name()
    env = {"GLOO_SOCKET_IFNAME": lo}
    route = netroute.choose("127.0.0.1", 29500, multi_node=False, environ=env)
    assert route.by_user and route.interface == lo and env["GLOO_SOCKET_IFNAME"] == lo
    assert route.describe() == f"{lo}, named by GLOO_SOCKET_IFNAME"
    with pytest.raises(UserError, match=r"GLOO_SOCKET_IFNAME=nosuch0 names no interface of this host \(nosuch0 "
                                        r"missing\): unset it"):
        netroute.choose("127.0.0.1", 29500, multi_node=False, environ={"GLOO_SOCKET_IFNAME": "nosuch0"})
