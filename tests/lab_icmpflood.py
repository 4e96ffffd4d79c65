#!/usr/bin/env python3
"""A forged ICMP unreachable flood for the portprobe lab (runs in the SERVER netns).

Started by ``tests/test_hostile_lab.py`` as::

    ip netns exec SERVER python3 tests/lab_icmpflood.py --iface IF --src A --dst B --seconds S

It watches the interface for the client's TCP SYNs (an AF_PACKET socket) and answers each
one with forged ICMP destination-unreachable messages (host, port, admin-prohibited) that
quote the SYN's own addresses and ports but a wrong sequence number: what an off-path
attacker who guesses the connection, but not its initial sequence number, can send.
Between SYNs it sprays blind unreachables at random client ports. Only ``--dst`` (a lab
address) is ever sent to, from ``--src``. On exit it prints ``SENT <n>`` on stdout.

A forged unreachable that quotes the right sequence number does abort a connect (RFC 5927
asks the kernel to check exactly that): an on-path attacker is out of scope for any
connect scanner, so this flood never does it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import select
import signal
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
CODES = (1, 3, 13)  # host unreachable, port unreachable, communication administratively prohibited
BLIND_PER_WAKE = 64  # blind packets sent whenever no SYN is waiting
SEQ_OFFSET_MIN = 1 << 20  # far outside any window


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_header(src: bytes, dst: bytes, proto: int, payload_len: int) -> bytes:
    """An IPv4 header (the kernel fills the checksum for IP_HDRINCL sockets)."""
    ident = random.getrandbits(16)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ident, 0, 64, proto, 0, src, dst)


def unreachable(src: bytes, dst: bytes, code: int, quoted: bytes) -> bytes:
    """A whole IPv4 packet: ICMP destination unreachable ``code`` quoting ``quoted``."""
    body = struct.pack("!BBHI", 3, code, 0, 0) + quoted
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return ip_header(src, dst, socket.IPPROTO_ICMP, len(body)) + body


def quoted_syn(client: bytes, server: bytes, sport: int, dport: int, seq: int) -> bytes:
    """The part of the client's SYN an unreachable quotes: its IP header and 8 TCP bytes."""
    tcp8 = struct.pack("!HHI", sport, dport, seq & 0xFFFFFFFF)
    return ip_header(client, server, socket.IPPROTO_TCP, 20) + tcp8


def main(argv: list[str] | None = None) -> int:
    """Flood until ``--seconds`` pass or SIGTERM; print how many packets were sent."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iface", required=True)
    ap.add_argument("--src", required=True, help="source of the forged ICMP (the server)")
    ap.add_argument("--dst", required=True, help="the client, the only destination")
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args(argv)
    for address in (args.src, args.dst):
        if ipaddress.ip_address(address) not in ipaddress.ip_network("198.18.0.0/15"):
            raise SystemExit(f"lab_icmpflood: {address} is not a lab address")
    src, dst = socket.inet_aton(args.src), socket.inet_aton(args.dst)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sniffer.bind((args.iface, ETH_P_IP))
    sniffer.setblocking(False)
    rng = random.Random(11)
    sent = 0
    print("READY", flush=True)
    deadline = time.monotonic() + args.seconds

    def send(packet: bytes) -> None:
        nonlocal sent
        try:
            sender.sendto(packet, (args.dst, 0))
            sent += 1
        except OSError:
            pass  # ENOBUFS under load: a flood may lose packets

    while not stop and time.monotonic() < deadline:
        ready, _, _ = select.select([sniffer], [], [], 0.0005)
        if ready:
            for _ in range(256):
                try:
                    pkt = sniffer.recv(128)
                except BlockingIOError:
                    break
                if len(pkt) < 40 or pkt[9] != socket.IPPROTO_TCP or pkt[12:16] != dst:
                    continue
                ihl = (pkt[0] & 0x0F) * 4
                sport, dport, seq = struct.unpack("!HHI", pkt[ihl : ihl + 8])
                flags = pkt[ihl + 13]
                if flags & 0x02 and not flags & 0x10:  # a SYN from the client
                    for code in CODES:
                        wrong = seq + rng.randrange(SEQ_OFFSET_MIN, 1 << 31)
                        send(unreachable(src, dst, code, quoted_syn(dst, src, sport, dport, wrong)))
        else:
            for _ in range(BLIND_PER_WAKE):
                quoted = quoted_syn(
                    dst, src, rng.randrange(1024, 65536), rng.randrange(1, 65536),
                    rng.getrandbits(32),
                )  # fmt: skip
                send(unreachable(src, dst, rng.choice(CODES), quoted))
    print(f"SENT {sent}", flush=True)
    sender.close()
    sniffer.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
