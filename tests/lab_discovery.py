"""The host-discovery lab: live hosts, hosts that answer only one kind of probe, and silent
routed addresses. Used by tests/test_nmap_habits_lab.py and bench/discovery.py.

On top of a :class:`netlab.Lab` built with ``extra_hosts`` (live addresses 198.18.0.3..):

- ``ICMP_ONLY`` (198.18.0.4) drops every TCP and UDP packet: only an ICMP echo shows it.
- ``UDP_ONLY`` (198.18.0.5) drops TCP and ICMP echoes: only the port-unreachable it sends
  for a UDP datagram shows it (an ICMP error from the host itself).
- ``SILENT4`` (198.18.2.0/28) and ``SILENT6`` (2001:db8:2::/124) are routed from the client
  to the server namespace, whose nftables drop them before routing: they are silent, as
  firewalled or absent hosts behind a router are.

Everything stays inside the lab's two namespaces (198.18.0.0/15, 2001:db8::/32).
"""

from __future__ import annotations

import ipaddress
import tempfile

import netlab

ICMP_ONLY = "198.18.0.4"
UDP_ONLY = "198.18.0.5"
SILENT4 = "198.18.2.0/28"
SILENT6 = "2001:db8:2::/124"
EXTRA_HOSTS = 6  # 198.18.0.3-8

_RULES = """
table inet discovery_lab {{
  chain prerouting {{
    type filter hook prerouting priority -10; policy accept;
    ip daddr {silent4} drop
    ip6 daddr {silent6} drop
    ip daddr {icmp_only} meta l4proto {{ tcp, udp }} drop
    ip daddr {udp_only} meta l4proto tcp drop
    ip daddr {udp_only} icmp type echo-request drop
  }}
}}
"""


def prepare(
    lab: netlab.Lab, *, silent4: str = SILENT4, silent6: str = SILENT6
) -> tuple[list[str], list[str]]:
    """Add the routes and drop rules to ``lab``; return (addresses up, addresses down)."""
    for argv in (
        ["ip", "route", "add", silent4, "via", lab.server4],
        ["ip", "-6", "route", "add", silent6, "via", lab.server6],
    ):
        proc = lab.run(argv, timeout=10)
        if proc.returncode != 0:
            raise netlab.LabError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    # run_in_server takes no input: the rules go through a file of our own.
    with tempfile.NamedTemporaryFile("w", suffix=".nft", encoding="ascii") as rules:
        rules.write(
            _RULES.format(silent4=silent4, silent6=silent6, icmp_only=ICMP_ONLY, udp_only=UDP_ONLY)
        )
        rules.flush()
        proc = lab.run_in_server(["nft", "-f", rules.name])
    if proc.returncode != 0:
        raise netlab.LabError(f"nft: {proc.stderr.strip()}")
    up = [lab.server4, lab.server6, *lab.extra4]
    return up, [str(a) for net in (silent4, silent6) for a in ipaddress.ip_network(net)]
