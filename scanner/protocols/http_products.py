"""Which product an HTTP reply comes from: Elasticsearch, CouchDB, Docker, Kubernetes...

Rules and theory:
- Many services are HTTP APIs; their answer to ``GET /`` names them, in a header only
  they send or in a JSON body of a documented shape. :func:`identify` takes what the
  HTTP probe already has (the status, the header fields, the first bytes of the body) and
  returns a :class:`Product`: a service name ("elasticsearch", "docker"), the product and
  its version. No extra request is made: ``http.ResponseParser`` keeps exactly these
  (``status``, ``headers``, ``body``).
- The rules are one table, :data:`RULES`, tried in order; each names the headers or
  body keys it relies on, from the product's own documentation:

  - Elasticsearch: ``X-elastic-product: Elasticsearch`` (7.14+), or the root JSON with
    ``"tagline": "You Know, for Search"``; ``version.number`` is the version.
    OpenSearch: the same shape, ``version.distribution: "opensearch"``.
  - CouchDB: the root JSON ``{"couchdb": "Welcome", "version": ...}``, ``Server: CouchDB/``.
  - Docker Engine API: ``Api-Version`` with ``Docker-Experimental`` or ``Ostype`` headers,
    ``Server: Docker/<version> (<os>)``.
  - Kubernetes API server: a ``Status`` object (``"kind": "Status", "apiVersion": "v1"``)
    or the ``X-Kubernetes-Pf-*`` (priority and fairness) headers.
  - Prometheus: ``GET /`` redirects to ``/graph`` (2.x) or ``/query`` (3.x) with the body
    ``<a href="/graph">Found</a>.``; a Prometheus page title.
  - Consul: ``X-Consul-*`` headers; ``GET /`` redirects to ``/ui/``.
  - Vault: ``GET /`` redirects to ``/ui/`` with a ``Cache-Control: no-store``, and its API
    errors are ``{"errors": [...]}``; only the redirect to ``/ui/`` together with the
    Vault-specific body shape counts.
  - InfluxDB: ``X-Influxdb-Version`` (and ``X-Influxdb-Build``).
  - Grafana: a redirect to ``/login`` with ``<a href="/login">Found</a>.``.
  - Jenkins: ``X-Jenkins`` (its version). Kibana: ``kbn-name`` / ``kbn-version``.
  - MinIO: ``Server: MinIO``. etcd: ``X-Etcd-Cluster-Id``. RabbitMQ management: a
    ``RabbitMQ Management`` title. Apache Solr: a ``Solr Admin`` title.
- Header names are compared lower-case; every value that reaches the result is cleaned
  and bounded. The body is looked at within ``MAX_BODY`` bytes, and JSON is parsed only
  when that prefix is a whole JSON object. A rule that does not match returns None; no
  rule may raise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from scanner.protocols import clean
from scanner.protocols.software import split_software

__all__ = ["MAX_BODY", "RULES", "Product", "identify"]

MAX_BODY = 4096


@dataclass(frozen=True, slots=True)
class Product:
    """An HTTP service identified: ``service`` ("elasticsearch"), ``product`` and ``version``
    as the reply gives them, and the ``rule`` that matched ("http_products:elasticsearch").
    """

    service: str
    product: str
    version: str
    rule: str


Headers = Mapping[str, str]
Rule = Callable[[int, Headers, bytes, Any], Product | None]


def _json(body: bytes) -> Any:
    """The body as JSON when it is a complete object within MAX_BODY, else None."""
    text = body[:MAX_BODY].strip()
    if not text.startswith(b"{") or not text.endswith(b"}"):
        return None
    try:
        return json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _get(obj: Any, *path: str) -> str:
    """The string at ``path`` in nested dicts, cleaned, or ""."""
    for key in path:
        if not isinstance(obj, dict):
            return ""
        obj = obj.get(key)
    return clean(obj, 60) if isinstance(obj, str) else ""


def _product(service: str, product: str, version: str) -> Product:
    return Product(service, product, clean(version, 40), f"http_products:{service}")


def _elasticsearch(status: int, headers: Headers, body: bytes, doc: Any) -> Product | None:
    distribution = _get(doc, "version", "distribution")
    version = _get(doc, "version", "number")
    if distribution == "opensearch":
        return _product("opensearch", "OpenSearch", version)
    if headers.get("x-elastic-product") == "Elasticsearch" or (
        _get(doc, "tagline") == "You Know, for Search"
    ):
        return _product("elasticsearch", "Elasticsearch", version)
    return None


def _couchdb(status: int, headers: Headers, body: bytes, doc: Any) -> Product | None:
    if _get(doc, "couchdb") == "Welcome":
        return _product("couchdb", "CouchDB", _get(doc, "version"))
    name, version = split_software(headers.get("server", ""))
    return _product("couchdb", "CouchDB", version) if name == "CouchDB" else None


def _docker(status: int, headers: Headers, body: bytes, doc: Any) -> Product | None:
    if "api-version" not in headers or not (
        "docker-experimental" in headers or "ostype" in headers
    ):
        return None
    name, version = split_software(headers.get("server", ""))
    return _product("docker", "Docker Engine", version if name == "Docker" else "")


def _kubernetes(status: int, headers: Headers, body: bytes, doc: Any) -> Product | None:
    if any(h.startswith("x-kubernetes-pf-") for h in headers) or (
        _get(doc, "kind") == "Status" and _get(doc, "apiVersion") == "v1"
    ):
        return _product("kubernetes", "Kubernetes API server", _get(doc, "gitVersion"))
    return None


_FOUND = re.compile(rb'<a href="(/[a-z/]{1,20})">Found</a>\.')


def _redirect_body(body: bytes) -> str:
    m = _FOUND.match(body[:200].strip())
    return m.group(1).decode() if m else ""


def _prometheus(status: int, headers: Headers, body: bytes, doc: Any) -> Product | None:
    target = headers.get("location", "")
    if status == 302 and target in ("/graph", "/query") and _redirect_body(body) == target:
        return _product("prometheus", "Prometheus", "")
    if b"<title>Prometheus" in body[:MAX_BODY]:
        return _product("prometheus", "Prometheus", "")
    return None


def _grafana(status: int, headers: Headers, body: bytes, doc: Any) -> Product | None:
    if status == 302 and headers.get("location") == "/login" and _redirect_body(body) == "/login":
        return _product("grafana", "Grafana", "")
    return None


def _consul(status: int, headers: Headers, body: bytes, doc: Any) -> Product | None:
    if any(h.startswith("x-consul-") for h in headers):
        return _product("consul", "Consul", "")
    return None


def _vault(status: int, headers: Headers, body: bytes, doc: Any) -> Product | None:
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if (
        isinstance(errors, list)
        and headers.get("cache-control") == "no-store"
        and (headers.get("location", "").startswith("/ui/") or status in (400, 403, 503))
    ):
        return _product("vault", "Vault", "")
    return None


def _by_header(service: str, product: str, header: str, version_header: str) -> Rule:
    def rule(status: int, headers: Headers, body: bytes, doc: Any) -> Product | None:
        if header not in headers:
            return None
        return _product(service, product, headers.get(version_header, ""))

    return rule


def _by_server(service: str, product: str, name: str) -> Rule:
    def rule(status: int, headers: Headers, body: bytes, doc: Any) -> Product | None:
        server, version = split_software(headers.get("server", ""))
        return _product(service, product, version) if server == name else None

    return rule


def _by_title(service: str, product: str, title: bytes) -> Rule:
    def rule(status: int, headers: Headers, body: bytes, doc: Any) -> Product | None:
        return _product(service, product, "") if title in body[:MAX_BODY] else None

    return rule


#: Tried in order; the first rule that returns a Product wins.
RULES: tuple[tuple[str, Rule], ...] = (
    ("elasticsearch", _elasticsearch),
    ("couchdb", _couchdb),
    ("docker", _docker),
    ("kubernetes", _kubernetes),
    ("influxdb", _by_header("influxdb", "InfluxDB", "x-influxdb-version", "x-influxdb-version")),
    ("jenkins", _by_header("jenkins", "Jenkins", "x-jenkins", "x-jenkins")),
    ("kibana", _by_header("kibana", "Kibana", "kbn-name", "kbn-version")),
    ("etcd", _by_header("etcd", "etcd", "x-etcd-cluster-id", "x-etcd-version")),
    ("consul", _consul),
    ("vault", _vault),
    ("prometheus", _prometheus),
    ("grafana", _grafana),
    ("minio", _by_server("minio", "MinIO", "MinIO")),
    ("rabbitmq", _by_title("rabbitmq-management", "RabbitMQ", b"<title>RabbitMQ Management")),
    ("solr", _by_title("solr", "Apache Solr", b"<title>Solr Admin")),
)


def identify(status: int, headers: Mapping[str, str] | list[tuple[bytes, bytes]],
             body: bytes) -> Product | None:  # fmt: skip
    """The product behind an HTTP reply, or None.

    ``headers``: {lower-case name: value} or h11's list of (name, value) byte pairs (the
    first of repeated fields wins); ``body``: its first bytes (only MAX_BODY are read).
    """
    fields: dict[str, str] = {}
    if isinstance(headers, Mapping):
        fields = {k.lower(): v for k, v in list(headers.items())[:128]}
    else:
        for name, value in headers[:128]:
            fields.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    fields = {k: v[:512].strip() for k, v in fields.items()}
    body = body[:MAX_BODY]
    doc = _json(body)
    for _name, rule in RULES:
        found = rule(status, fields, body, doc)
        if found is not None:
            return found
    return None
