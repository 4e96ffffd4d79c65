"""Passive banners: what a server says first, before the client sends anything.

Rules and theory:
- Many protocols make the server speak first: SSH sends its identification string
  (RFC 4253 4.2), SMTP a ``220`` greeting (RFC 5321 4.2), FTP a ``220`` reply
  (RFC 959 4.2), NNTP ``200``/``201`` (RFC 3977 5.1), POP3 ``+OK`` (RFC 1939 4), IMAP an
  untagged ``* OK`` / ``* PREAUTH`` / ``* BYE`` (RFC 9051 7.1), VNC its ``RFB xxx.yyy``
  version (RFC 6143 7.1.1), rsync ``@RSYNCD:``, MySQL/MariaDB an initial handshake packet
  (protocol 10) or an error packet, and telnet servers usually open with IAC option
  negotiation (RFC 854). :func:`classify` recognises these from the bytes received so far.
- The rules form one table, :data:`RULES`, tried in order; each rule looks at a bounded
  prefix and returns an :class:`Evidence` or ``None``. The first hit wins.
- SMTP and FTP both greet with ``220``; only the greeting's words tell them apart
  ("ESMTP", "Postfix", "vsFTPd", "FTP"...). A bare ``220 ready`` proves neither, so it is
  reported as an unidentified banner instead of a guess.
- MySQL's greeting names the product and version: MariaDB says so in its version string
  (``10.11.6-MariaDB-0+deb12u1``, sent as ``5.5.5-10.11.6-MariaDB...`` to old clients);
  any other version string is taken as MySQL's (Oracle's server and forks such as Percona
  send ``8.0.36`` or ``8.0.36-28``). The version is the leading dotted number. An error
  packet names the product only in its text ("... to this MariaDB server").
- Whatever a server said first that no rule recognises is still evidence that something
  speaks there: :func:`classify` returns it with an empty ``service`` (text as one clean
  line, binary as a length and a hex prefix). Callers rank it below any identification.
- Where the banner names its software, the evidence carries ``product`` and ``version``
  (the SSH software version, "Exim 4.96", "vsFTPd 3.0.3", "ProFTPD 1.3.8", MySQL's or
  MariaDB's version string...), from :data:`PRODUCTS` (a table of known names, looked for
  in the first lines) or the protocol's own field; ``rule`` is ``banner:<rule name>``.
- rsync daemons announce ``@RSYNCD: <protocol>`` and, since protocol 30, the digest
  names they accept (``@RSYNCD: 32.0 sha512 sha256 sha1 md5 md4``): both forms count.
  The product is rsync; its own version is not on the wire.
- Text rules accept a partial last line (the caller may still be reading);
  :func:`settled` tells the caller when the bytes so far form a complete banner.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.software import split_software

__all__ = [
    "IAC",
    "MAX_BANNER",
    "PRODUCTS",
    "RULES",
    "WILL_WONT_DO_DONT",
    "classify",
    "settled",
    "strip_iac",
    "unidentified",
]

MAX_BANNER = 4096  # bytes of a banner any rule looks at
_MAX_LINES = 8  # RFC 4253 lets an SSH server send other lines before its version line
_HEX_PREFIX = 16

Rule = Callable[[bytes], Evidence | None]


def _lines(data: bytes) -> list[bytes]:
    """The first lines of ``data`` (the last one maybe partial), without line ends."""
    return [line.rstrip(b"\r") for line in data[:MAX_BANNER].split(b"\n", _MAX_LINES)]


def _first_line(data: bytes) -> bytes:
    return data[:MAX_BANNER].split(b"\n", 1)[0].rstrip(b"\r")


# --------------------------------------------------------------------------- products

_V = rb"v?(\d+(?:\.\d+){1,3}[a-z0-9]*)"
#: Software names looked for in a text banner: (pattern, product); the pattern's group, if
#: it matched, is the version.
PRODUCTS: tuple[tuple[re.Pattern[bytes], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), name)
    for pattern, name in (
        (rb"\bExim " + _V, "Exim"),
        (rb"\bPostfix\b()", "Postfix"),
        (rb"\bSendmail " + _V, "Sendmail"),
        (rb"\bOpenSMTPD\b()", "OpenSMTPD"),
        (rb"\bMicrosoft ESMTP MAIL Service\b()", "Microsoft Exchange SMTP"),
        (rb"\bvsFTPd " + _V, "vsFTPd"),
        (rb"\bProFTPD(?: " + _V + rb")?", "ProFTPD"),
        (rb"\bPure-FTPd\b()", "Pure-FTPd"),
        (rb"\bFileZilla Server(?: " + _V + rb")?", "FileZilla Server"),
        (rb"\bDovecot\b()", "Dovecot"),
        (rb"\bCyrus (?:IMAP|POP3)(?:4)?(?: " + _V + rb")?", "Cyrus IMAP"),
        (rb"\bCourier-IMAP\b()", "Courier-IMAP"),
        (rb"\bINN " + _V, "INN"),
    )
)


def _product(lines: bytes) -> tuple[str, str]:
    """(product, version) named in ``lines``, ("", "") for none."""
    for pattern, name in PRODUCTS:
        m = pattern.search(lines)
        if m is not None:
            return name, (m.group(1) or b"").decode("ascii")
    return "", ""


def _named(service: str, detail: str, rule: str, words: bytes) -> Evidence:
    product, version = _product(words)
    return Evidence(service, detail, "banner", product=product, version=version,
                    rule=f"banner:{rule}")  # fmt: skip


# --------------------------------------------------------------------------- text rules

_SSH = re.compile(rb"SSH-(\d+\.\d+)-([!-~]{1,200})(?: ([ -~]*))?")


def _ssh(data: bytes) -> Evidence | None:
    if not data.startswith(b"SSH-") and b"\nSSH-" not in data[:MAX_BANNER]:
        return None
    for line in _lines(data)[:_MAX_LINES]:
        m = _SSH.match(line)
        if m is not None:
            proto, software, comments = m.group(1), m.group(2), m.group(3) or b""
            version = f"protocol {proto.decode()}" if proto != b"2.0" else ""
            text = clean(software + (b" " + comments if comments else b""))
            product, release = split_software(software.decode("ascii"))
            return Evidence("ssh", join_detail(text, version), "banner", product=product,
                            version=release, rule="banner:ssh")  # fmt: skip
    return None


_REPLY = re.compile(rb"(\d{3})([ -]?)(.*)")
_FTP_WORDS = re.compile(rb"ftp|filezilla|serv-u", re.IGNORECASE)
_SMTP_WORDS = re.compile(
    rb"e?smtp|postfix|exim|sendmail|qmail|haraka|opensmtpd|mail ?server|\bmta\b", re.IGNORECASE
)
_MAIL_WORDS = re.compile(rb"\bmail", re.IGNORECASE)
_NNTP_WORDS = re.compile(rb"nntp|\bnews|\binn\b|usenet", re.IGNORECASE)


def _numeric_greeting(data: bytes) -> Evidence | None:
    """SMTP, FTP and NNTP greet with a three-digit reply code."""
    m = _REPLY.fullmatch(_first_line(data))
    if m is None or not m.group(3).strip():
        return None
    code, text = m.group(1), m.group(3)
    words = b" ".join(_lines(data)[:_MAX_LINES])
    detail = clean(text)
    if code in (b"200", b"201") and _NNTP_WORDS.search(words):
        return _named("nntp", detail, "nntp", words)
    if code not in (b"220", b"120", b"421", b"554"):
        return None
    # An explicit "SMTP" beats "ftp" beats a mere "mail": "mail.example.com FTP server".
    if _SMTP_WORDS.search(words):
        return _named("smtp", detail, "smtp", words)
    if _FTP_WORDS.search(words):
        return _named("ftp", detail, "ftp", words)
    if _MAIL_WORDS.search(words):
        return _named("smtp", detail, "smtp-mail", words)
    return None


def _pop3(data: bytes) -> Evidence | None:
    line = _first_line(data)
    if line == b"+OK" or line.startswith(b"+OK "):
        return _named("pop3", clean(line[4:]), "pop3", line)
    return None


_IMAP = re.compile(rb"\* (OK|PREAUTH|BYE)(?: |$)(?:\[[^\]]*\] ?)?(.*)", re.IGNORECASE)


def _imap(data: bytes) -> Evidence | None:
    m = _IMAP.fullmatch(_first_line(data))
    if m is None:
        return None
    status = m.group(1).upper().decode()
    detail = join_detail(clean(m.group(2)), "" if status == "OK" else status)
    return _named("imap", detail, "imap", m.group(2))


_RFB = re.compile(rb"RFB (\d{3})\.(\d{3})\n")


def _vnc(data: bytes) -> Evidence | None:
    m = _RFB.match(data)
    if m is None:
        return None
    return Evidence("vnc", f"RFB {int(m.group(1))}.{int(m.group(2))}", "banner", rule="banner:vnc")


_RSYNC = re.compile(rb"@RSYNCD: (\d{1,3}(?:\.\d{1,3})?)((?: [a-z0-9_-]{1,16}){0,16})(?:\r?\n|$)")


def _rsync(data: bytes) -> Evidence | None:
    m = _RSYNC.match(data)
    if m is None:
        return None
    digests = m.group(2).decode().strip()
    detail = join_detail(f"protocol {m.group(1).decode()}", f"digests {digests}" if digests else "")
    return Evidence("rsync", detail, "banner", product="rsync", rule="banner:rsync")


# --------------------------------------------------------------------------- binary rules

_MYSQL_MAX_PACKET = 1024  # a greeting or an error is ~50-200 bytes
_MYSQL_VERSION = re.compile(rb"[0-9][ -~]{0,79}")
_MARIADB_PREFIX = b"5.5.5-"  # MariaDB's version as old clients must see it
_MYSQL_NUMBER = re.compile(rb"\d{1,3}\.\d{1,3}(?:\.\d{1,4})?")
_MYSQL_SERVER = re.compile(rb"\b(MariaDB|MySQL) server\b")
_CLIENT_PLUGIN_AUTH = 0x00080000


def _mysql(data: bytes) -> Evidence | None:
    """The MySQL/MariaDB initial handshake (protocol 10) or an error packet, sequence 0."""
    if len(data) < 5 or data[3] != 0:
        return None
    length = int.from_bytes(data[:3], "little")
    if not 8 <= length <= _MYSQL_MAX_PACKET:
        return None
    payload = data[4 : 4 + length]
    if payload[0] == 0x0A:
        return _mysql_handshake(payload)
    if payload[0] == 0xFF:
        return _mysql_error(payload)
    return None


def _mysql_handshake(payload: bytes) -> Evidence | None:
    nul = payload.find(b"\0", 1, 1 + 81)
    if nul < 0:
        return None
    version = payload[1:nul]
    if _MYSQL_VERSION.fullmatch(version) is None:
        return None
    rest = payload[nul + 1 :]
    # connection id (4), auth-plugin-data-part-1 (8), filler (1, always 0)
    if len(rest) >= 13 and rest[12] != 0:
        return None
    if version.startswith(_MARIADB_PREFIX) and b"mariadb" in version.lower():
        version = version[len(_MARIADB_PREFIX) :]
    plugin = b""
    # then capability flags low (2), charset (1), status (2), capability flags high (2),
    # auth data length (1), reserved (10), auth-plugin-data-part-2, plugin name NUL-ended.
    if len(rest) >= 31:
        caps = int.from_bytes(rest[13:15], "little") | int.from_bytes(rest[18:20], "little") << 16
        if caps & _CLIENT_PLUGIN_AUTH:
            start = 31 + max(13, rest[20] - 8)
            end = rest.find(b"\0", start)
            name = rest[start : end if end >= 0 else len(rest)]
            if re.fullmatch(rb"[a-z0-9_]{1,64}", name):
                plugin = name
    number = _MYSQL_NUMBER.match(version)
    return Evidence(
        "mysql",
        join_detail(clean(version), clean(plugin)),
        "banner",
        product="MariaDB" if b"mariadb" in version.lower() else "MySQL",
        version=number.group().decode() if number else "",
        rule="mysql:handshake",
    )


def _mysql_error(payload: bytes) -> Evidence | None:
    if len(payload) < 7:
        return None
    code = int.from_bytes(payload[1:3], "little")
    message = payload[3:]
    if message.startswith(b"#"):
        message = message[6:]  # "#" + SQLSTATE, sent once capabilities are agreed
    if not 1000 <= code < 5000 or re.fullmatch(rb"[ -~\t]{4,}", message) is None:
        return None
    named = _MYSQL_SERVER.search(message)
    return Evidence(
        "mysql",
        clean(f"error {code}: " + message.decode("ascii")),
        "banner",
        product=named.group(1).decode() if named else "",
        rule="mysql:error",
    )


IAC, _SB, _SE = 0xFF, 0xFA, 0xF0
WILL_WONT_DO_DONT = range(0xFB, 0xFF)  # the option negotiation commands


def _telnet(data: bytes) -> Evidence | None:
    """Telnet option negotiation (IAC WILL/WONT/DO/DONT), then the text it wraps."""
    if len(data) < 3 or data[0] != IAC or data[1] not in WILL_WONT_DO_DONT:
        return None
    return Evidence("telnet", clean(strip_iac(data[:MAX_BANNER])), "banner", rule="banner:telnet")


def strip_iac(data: bytes) -> bytes:
    """``data`` without telnet commands (IAC sequences and subnegotiations)."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        if byte != IAC:
            out.append(byte)
            i += 1
        elif i + 1 < n and data[i + 1] == IAC:
            out.append(IAC)  # an escaped 0xFF data byte
            i += 2
        elif i + 1 < n and data[i + 1] in WILL_WONT_DO_DONT:
            i += 3
        elif i + 1 < n and data[i + 1] == _SB:
            end = data.find(bytes((IAC, _SE)), i + 2)
            i = n if end < 0 else end + 2
        else:
            i += 2
    return bytes(out)


# --------------------------------------------------------------------------- the table

#: Tried in order; the first rule that returns evidence wins.
RULES: tuple[tuple[str, Rule], ...] = (
    ("ssh", _ssh),
    ("mysql", _mysql),
    ("telnet", _telnet),
    ("vnc", _vnc),
    ("rsync", _rsync),
    ("pop3", _pop3),
    ("imap", _imap),
    ("smtp/ftp/nntp", _numeric_greeting),
)

_PRINTABLE_BYTES = frozenset(b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100)))


def classify(data: bytes) -> Evidence | None:
    """What the first bytes a server sent show; ``None`` for no bytes.

    A recognised protocol gives its service name and a detail (software, version); any
    other banner gives ``Evidence("", <first line or hex prefix>, "banner")``.
    """
    if not data:
        return None
    head = data[:MAX_BANNER]
    for _name, rule in RULES:
        found = rule(head)
        if found is not None:
            return found
    return unidentified(head)


def unidentified(data: bytes, proof: str = "banner") -> Evidence:
    """``data`` shown as what it is, unidentified: ``Evidence("", <text or hex>, proof)``.

    A line of text (escape sequences and all, cleaned) or, for binary, a length and a
    hex prefix.
    """
    line = _first_line(data[:256])
    printable = sum(b in _PRINTABLE_BYTES for b in line)
    # Text, if mostly printable: escape sequences in a banner are text (and get cleaned).
    if line.strip() and b"\0" not in line and printable >= 0.75 * len(line):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(line) - 3:  # not just a character cut at the end
                return _binary(data, proof)
        return Evidence("", clean(line), proof)
    return _binary(data, proof)


def _binary(data: bytes, proof: str) -> Evidence:
    more = "..." if len(data) > _HEX_PREFIX else ""
    return Evidence("", f"{len(data)} bytes: {data[:_HEX_PREFIX].hex()}{more}", proof)


def settled(data: bytes) -> bool:
    """True when ``data`` looks like a complete banner: nothing more need be waited for.

    A text banner is complete at a line end; a MySQL packet when all of its announced
    length has arrived; a telnet negotiation is never complete (a prompt may follow).
    """
    if not data:
        return False
    if data.endswith(b"\n"):
        return True
    if _mysql(data) is not None:
        return len(data) >= 4 + int.from_bytes(data[:3], "little")
    return False
