"""Customary uses: well-documented unofficial uses of port numbers, each with its source.

Rules:
- IANA's registry says who asked for a number, not what runs there. Some numbers carry a
  use that the registry does not name but that is documented and widespread: a
  framework's default port, a vendor's documented port, a name nmap gives the port.
  Evidence of such a use is ``customary`` (:class:`scanner.models.Verdict`): neither
  what the registry names nor a contradiction worth an alarm.
- Each entry names its port, transport, the evidence services that match it (the names
  ``scanner.protocols`` decoders give: ``http``, ``https``, ``tls``, ``ssh``, ...), the use
  in a few words, and its source: a vendor's documentation, an RFC, or nmap's service
  name for the port (``nmap-services``). The words are portprobe's own.
- The dynamic range (49152-65535) is customary for anything: RFC 6335 leaves it free for
  any use (:data:`DYNAMIC_USE`).
- A use is only customary where it is listed. The table is small on purpose: every entry
  is a port where a common service shows up on ordinary machines, and an alarm there
  would teach users to ignore alarms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["CUSTOMARY", "DYNAMIC_USE", "CustomaryUse", "customary_uses"]

_HTTP = frozenset({"http"})
_HTTPS = frozenset({"https", "tls"})
_WEB = _HTTP | _HTTPS


@dataclass(frozen=True, slots=True)
class CustomaryUse:
    """A documented unofficial use of ``port`` on ``transport``.

    ``services`` are the evidence services that match it; ``use`` says what it is;
    ``source`` where it is documented.
    """

    port: int
    transport: str
    services: frozenset[str]
    use: str
    source: str


#: The table (see the module rules); sorted by port.
CUSTOMARY: tuple[CustomaryUse, ...] = (
    CustomaryUse(631, "tcp", _WEB, "CUPS, the Unix print server: IPP and its web interface "
                 "over HTTP", "CUPS documentation (cupsd.conf: Listen localhost:631)"),
    CustomaryUse(1080, "tcp", frozenset({"socks"}), "SOCKS proxies",
                 "RFC 1928 (SOCKS 5); nmap service name socks"),
    CustomaryUse(2222, "tcp", frozenset({"ssh"}), "a second SSH server (containers, "
                 "NAS devices, Git servers)", "linuxserver.io openssh-server image "
                 "documentation (listens on 2222)"),
    CustomaryUse(3000, "tcp", _HTTP, "development HTTP servers (Node.js frameworks) and "
                 "Grafana", "Grafana documentation (http_port defaults to 3000)"),
    CustomaryUse(3128, "tcp", _HTTP, "Squid and other HTTP proxies",
                 "Squid documentation (http_port 3128); nmap service name squid-http"),
    CustomaryUse(4200, "tcp", _HTTP, "Angular's development server",
                 "Angular CLI documentation (ng serve defaults to port 4200)"),
    CustomaryUse(5000, "tcp", _HTTP, "development HTTP servers (Flask) and container "
                 "registries", "Flask documentation (flask run serves on port 5000)"),
    CustomaryUse(5173, "tcp", _HTTP, "Vite's development server",
                 "Vite documentation (server.port defaults to 5173)"),
    CustomaryUse(5601, "tcp", _WEB, "Kibana's web interface",
                 "Kibana documentation (server.port defaults to 5601)"),
    CustomaryUse(6443, "tcp", _HTTPS, "the Kubernetes API server",
                 "Kubernetes documentation, Ports and Protocols (kube-apiserver 6443)"),
    CustomaryUse(8000, "tcp", _HTTP, "development and application HTTP servers",
                 "Python documentation (python -m http.server serves on 8000); Django "
                 "documentation (runserver on 8000)"),
    CustomaryUse(8001, "tcp", _HTTP, "kubectl proxy",
                 "Kubernetes documentation (kubectl proxy listens on 8001)"),
    CustomaryUse(8008, "tcp", _HTTP, "alternate HTTP servers", "nmap service name http"),
    CustomaryUse(8080, "tcp", _WEB, "HTTP proxies and application servers (Tomcat, "
                 "Jenkins)", "Apache Tomcat documentation (HTTP connector on 8080); nmap "
                 "service name http-proxy"),
    CustomaryUse(8443, "tcp", _WEB, "alternate HTTPS: application servers and appliances' "
                 "admin pages", "Apache Tomcat documentation (TLS connector on 8443); nmap "
                 "service name https-alt"),
    CustomaryUse(8888, "tcp", _WEB, "Jupyter notebooks and alternate HTTP servers",
                 "Jupyter documentation (the notebook server defaults to 8888)"),
    CustomaryUse(9090, "tcp", _HTTP, "Prometheus's web interface and API",
                 "Prometheus documentation (the server listens on 9090)"),
    CustomaryUse(9100, "tcp", _HTTP, "Prometheus node exporter metrics",
                 "Prometheus node_exporter documentation (listens on 9100)"),
    CustomaryUse(9200, "tcp", _WEB, "Elasticsearch's REST API",
                 "Elasticsearch documentation (http.port defaults to 9200)"),
    CustomaryUse(10250, "tcp", _HTTPS, "the kubelet API on Kubernetes nodes",
                 "Kubernetes documentation, Ports and Protocols (kubelet 10250)"),
    CustomaryUse(27017, "tcp", frozenset({"mongodb"}), "MongoDB",
                 "MongoDB documentation (mongod listens on 27017); IANA names it only "
                 "since 2016"),
)  # fmt: skip

#: VNC servers listen on 5900 plus their display number: display :1 on 5901 and so on
#: (RFC 6143 names 5900 only; nmap's service names vnc-1 ... vnc-3 for 5901-5903; Xvnc and
#: TigerVNC's vncserver documentation: "port 5900+N for display :N").
CUSTOMARY += tuple(
    CustomaryUse(5900 + display, "tcp", frozenset({"vnc"}), f"VNC display :{display}",
                 "TigerVNC's vncserver documentation (display :N on port 5900+N); nmap "
                 "names 5901-5903 vnc-1 to vnc-3")
    for display in range(1, 10)
)  # fmt: skip

#: Anything seen on a dynamic port without a name is customary: RFC 6335 leaves it free.
DYNAMIC_USE: Final = CustomaryUse(
    0, "", frozenset(), "any use: the dynamic range is free for all", "RFC 6335, section 6"
)

_BY_PORT: Final = {
    key: tuple(u for u in CUSTOMARY if (u.port, u.transport) == key)
    for key in {(u.port, u.transport) for u in CUSTOMARY}
}


def customary_uses(port: int, transport: str) -> tuple[CustomaryUse, ...]:
    """The customary uses of ``port`` on ``transport`` (none for most ports)."""
    return _BY_PORT.get((port, transport.lower()), ())
