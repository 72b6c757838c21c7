"""WebDAV/CalDAV/CardDAV request bodies and multistatus parsing (RFC 4918, 4791, 6352, 6578). Pure: bytes
in, dataclasses out; the HTTP exchange is in dav.py."""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import unquote, urljoin, urlsplit

from mailferry_api.groupware import CollectionKind

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
CS = "http://calendarserver.org/ns/"
APPLE = "http://apple.com/ns/ical/"
NAMESPACES = {"d": DAV, "c": CALDAV, "cr": CARDDAV, "cs": CS, "ic": APPLE}
XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n'
_NS_DECL = f'xmlns:d="{DAV}" xmlns:c="{CALDAV}" xmlns:cr="{CARDDAV}" xmlns:cs="{CS}" xmlns:ic="{APPLE}"'

DATA_PROP = {"calendars": "c:calendar-data", "contacts": "cr:address-data"}
MULTIGET = {"calendars": "c:calendar-multiget", "contacts": "cr:addressbook-multiget"}
CONTENT_TYPE = {"calendars": "text/calendar; charset=utf-8", "contacts": "text/vcard; charset=utf-8"}
SUFFIX = {"calendars": ".ics", "contacts": ".vcf"}


class DavProtocolError(ValueError):
    """The server's answer is not the XML the RFC describes."""


@dataclass
class Response:
    """One <d:response>: its href, HTTP status, and the properties that came back 200 (tag -> element)."""

    href: str
    status: int | None = None
    props: dict[str, ET.Element] = field(default_factory=dict)

    def text(self, tag: str) -> str | None:
        el = self.props.get(tag)
        return None if el is None else (el.text or "")

    def hrefs(self, tag: str) -> list[str]:
        el = self.props.get(tag)
        return [] if el is None else [h.text.strip() for h in el.iter(f"{{{DAV}}}href") if h.text]


@dataclass
class Multistatus:
    responses: list[Response]
    sync_token: str | None = None


def _q(tag: str) -> str:
    prefix, local = tag.split(":")
    return f"{{{NAMESPACES[prefix]}}}{local}"


def _status_code(text: str | None) -> int | None:
    m = re.match(r"\s*HTTP/\d(?:\.\d)?\s+(\d{3})", text or "")
    return int(m.group(1)) if m else None


def parse_multistatus(body: bytes) -> Multistatus:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise DavProtocolError(f"multistatus is not XML: {exc}") from None
    if root.tag != _q("d:multistatus"):
        raise DavProtocolError(f"expected d:multistatus, got {root.tag}")
    out: list[Response] = []
    for r in root.findall("d:response", NAMESPACES):
        href_el = r.find("d:href", NAMESPACES)
        if href_el is None or not href_el.text:
            raise DavProtocolError("a response without href")
        resp = Response(
            href=href_el.text.strip(), status=_status_code(r.findtext("d:status", None, NAMESPACES))
        )
        for ps in r.findall("d:propstat", NAMESPACES):
            if _status_code(ps.findtext("d:status", None, NAMESPACES)) != 200:
                continue
            prop = ps.find("d:prop", NAMESPACES)
            for child in prop if prop is not None else []:
                resp.props[child.tag] = child
        out.append(resp)
    return Multistatus(out, root.findtext("d:sync-token", None, NAMESPACES))


def propfind(*props: str) -> bytes:
    inner = "".join(f"<{p}/>" for p in props)
    return f"{XML_HEAD}<d:propfind {_NS_DECL}><d:prop>{inner}</d:prop></d:propfind>".encode()


# What a destination collection must tell (no sync token: a server may hash every item to compute one).
DESTINATION_PROPS = ("d:resourcetype", "d:displayname", "c:supported-calendar-component-set")
COLLECTION_PROPS = (
    "d:resourcetype",
    "d:displayname",
    "d:sync-token",
    "cs:getctag",
    "d:supported-report-set",
    "c:supported-calendar-component-set",
    "c:calendar-description",
    "cr:addressbook-description",
    "ic:calendar-color",
    "c:calendar-timezone",
)


def sync_collection(token: str | None, props: tuple[str, ...] = ("d:getetag",)) -> bytes:
    """RFC 6578 §3.2: an empty token asks for every member plus a token."""
    inner = "".join(f"<{p}/>" for p in props)
    tok = _escape(token or "")
    return (
        f"{XML_HEAD}<d:sync-collection {_NS_DECL}><d:sync-token>{tok}</d:sync-token>"
        f"<d:sync-level>1</d:sync-level><d:prop>{inner}</d:prop></d:sync-collection>"
    ).encode()


def multiget(kind: CollectionKind, hrefs: list[str]) -> bytes:
    tag = MULTIGET[kind]
    inner = "".join(f"<d:href>{_escape(h)}</d:href>" for h in hrefs)
    return (
        f"{XML_HEAD}<{tag} {_NS_DECL}><d:prop><d:getetag/><{DATA_PROP[kind]}/></d:prop>{inner}</{tag}>"
    ).encode()


def mkcol(kind: CollectionKind, displayname: str | None, extra: dict[str, str]) -> tuple[str, bytes]:
    """MKCALENDAR (RFC 4791 §5.3.1) or extended MKCOL (RFC 5689) with the source's visible properties."""
    props = "".join(f"<{tag}>{value}</{tag}>" for tag, value in extra.items())
    if displayname:
        props += f"<d:displayname>{_escape(displayname)}</d:displayname>"
    if kind == "calendars":
        return (
            "MKCALENDAR",
            f"{XML_HEAD}<c:mkcalendar {_NS_DECL}><d:set><d:prop>{props}</d:prop></d:set>"
            "</c:mkcalendar>".encode(),
        )
    rt = "<d:resourcetype><d:collection/><cr:addressbook/></d:resourcetype>"
    return (
        "MKCOL",
        f"{XML_HEAD}<d:mkcol {_NS_DECL}><d:set><d:prop>{rt}{props}</d:prop></d:set></d:mkcol>".encode(),
    )


def inner_xml(el: ET.Element) -> str:
    """A property's content as XML text, to copy it verbatim into MKCALENDAR (e.g. the component set)."""
    parts = []
    for child in el:
        ET.register_namespace("d", DAV)
        ET.register_namespace("c", CALDAV)
        parts.append(ET.tostring(child, encoding="unicode"))
    return "".join(parts) if parts else _escape(el.text or "")


def is_kind(resp: Response, kind: CollectionKind) -> bool:
    rt = resp.props.get(_q("d:resourcetype"))
    want = _q("c:calendar") if kind == "calendars" else _q("cr:addressbook")
    return rt is not None and rt.find(want) is not None


def supports_sync_collection(resp: Response) -> bool:
    reports = resp.props.get(_q("d:supported-report-set"))
    return reports is not None and reports.find(f".//{_q('d:sync-collection')}") is not None


def components(resp: Response) -> set[str]:
    el = resp.props.get(_q("c:supported-calendar-component-set"))
    if el is None:
        return set()
    return {c.get("name", "").upper() for c in el.findall("c:comp", NAMESPACES)}


def tag(name: str) -> str:
    return _q(name)


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def absolute(base: str, href: str) -> str:
    return urljoin(base, href)


def path_of(url_or_href: str) -> str:
    return urlsplit(url_or_href).path or "/"


def basename(href: str) -> str:
    """The resource name of a member href (its last path segment, decoded)."""
    return unquote(posixpath.basename(path_of(href).rstrip("/")))


def same_path(a: str, b: str) -> bool:
    return unquote(path_of(a)).rstrip("/") == unquote(path_of(b)).rstrip("/")
