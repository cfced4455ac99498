"""Task containers have no network unless the Knot asks for one."""
import pytest

import spmd

pytestmark = pytest.mark.docker


def reach(_):
    import errno
    import os
    import socket
    try:  # TEST-NET-1: never answers, but with no route the kernel refuses at once
        socket.create_connection(("192.0.2.1", 80), timeout=1).close()
        outcome = "connected"
    except OSError as exc:
        outcome = errno.errorcode.get(exc.errno, "timeout")
    return sorted(os.listdir("/sys/class/net")), outcome


def test_no_network_unless_asked(local, engine):
    interfaces, outcome = spmd.Knot(reach, config=local).map([0]).results(timeout=300)[0]
    assert interfaces == ["lo"] and outcome == "ENETUNREACH"
    asked, _ = spmd.Knot(reach, network=True, config=local).map([0]).results(timeout=300)[0]
    assert "eth0" in asked
    by_config, _ = spmd.Knot(reach, config={**local, "network": True}).map([0]).results(timeout=300)[0]
    assert "eth0" in by_config


def test_network_must_be_a_boolean(local):
    with pytest.raises(ValueError, match="network"):
        spmd.Knot(reach, network="yes", config=local)
