"""A real SAML 2.0 identity provider for Cloister's tests: pysaml2's `Server`
signing with xmlsec1, behind a small HTTP server on 127.0.0.1.

Run by `tests/src/saml.rs`, which documents what it does for the tests; in
short:

- `GET /metadata`: the IdP's metadata (its entityID is this URL).
- `GET /sso?SAMLRequest=…&RelayState=…`: HTTP-Redirect binding. The
  AuthnRequest is parsed by pysaml2 and answered with pysaml2's HTTP-POST
  binding form: a page with `<form action="ACS" method="post">` holding
  `SAMLResponse` (and `RelayState` when one came), for the person chosen by
  `POST /control/next-login`, made the way `POST /control/mode` says.
- `/control/…`: JSON, for the tests: `POST next-login` `{"name_id",
  "attributes"}`, `POST evil` (the same, for the forged assertions), `POST
  mode` `{"mode"}`, `GET unsolicited?relay_state=…`, `GET last-response`
  (`{"xml"}`), `GET certificate` (`{"pem"}`). Errors: 400 `{"error"}`.

Settings from the environment:

- `SAML_SP_ENTITY_ID`, `SAML_SP_ACS_URL` (required): the one service provider
  it knows, and its Assertion Consumer Service (HTTP-POST binding).
- `SAML_IDP_PORT`: default 0, a free port.
- `SAML_IDP_DIR`: where its key and certificate are written (a temporary
  directory by default).
- `SAML_EXIT_ON_STDIN_EOF=1`: exit when standard input closes, so that a
  test process killed by SIGKILL leaves no IdP behind.

Prints exactly one line on stdout, `IDP http://127.0.0.1:PORT`, once it
listens; logs to stderr.
"""

import base64
import contextlib
import copy
import datetime
import html
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

# pysaml2 7.5 still names cryptography's CFB mode where cryptography 43+
# deprecated it; it never uses it here.
warnings.filterwarnings("ignore", message="CFB has been moved")

import saml2.time_util  # noqa: E402
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml
from saml2.attribute_converter import AttributeConverter
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.pack import http_form_post_message
from saml2.s_utils import do_ava, factory
from saml2.samlp import STATUS_AUTHN_FAILED
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

log = logging.getLogger("saml-idp")

MODES = (
    "valid",
    "assertion_signed",
    "response_signed",
    "unsigned",
    "tampered",
    "wrong_audience",
    "expired",
    "xsw_sibling",
    "xsw_same_id",
    "xsw_wrapped",
    "xsw_extensions",
    "xsw_signature_object",
)

# The audience of `wrong_audience` responses: another service provider,
# known to the IdP like the real one.
OTHER_SP_ENTITY_ID = "https://other-sp.example.org/saml/metadata"

# Who signs in in the forged assertions of the `xsw_*` modes (and whose
# NameID `tampered` puts in), unless `POST /control/evil` said otherwise.
DEFAULT_EVIL = {
    "name_id": "evil-admin",
    "attributes": {
        "uid": ["admin"],
        "urn:oid:0.9.2342.19200300.100.1.1": ["admin"],
        "displayName": ["Evil Admin"],
        "mail": ["admin@example.org"],
    },
}

NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"


class PassThroughConverter(AttributeConverter):
    """Attributes exactly as the tests name them: `Name` is the key given,
    with NameFormat `uri` when it looks like one (has a colon: `urn:oid:…`,
    `http://…`) and `basic` otherwise (`uid`, `displayName`). pysaml2's own
    converters map friendly names to OIDs (its `uri` one) or lowercase them
    (its NOOP one), which a test naming attributes could not see through."""

    def __init__(self):
        super().__init__(saml.NAME_FORMAT_URI)
        self._to = {}
        self._fro = {}

    def to_(self, attrvals):
        return [
            factory(
                saml.Attribute,
                name=name,
                name_format=saml.NAME_FORMAT_URI if ":" in name else saml.NAME_FORMAT_BASIC,
                attribute_value=do_ava(values),
            )
            for name, values in attrvals.items()
        ]


def make_key_and_cert(directory):
    """An RSA 2048 key and a self-signed SHA-256 certificate for it, valid
    from a day ago for ten years, as PEM files in `directory`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cloister test SAML IdP")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_file = os.path.join(directory, "idp-key.pem")
    cert_file = os.path.join(directory, "idp-cert.pem")
    with open(key_file, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


def sp_metadata(entity_id, acs_url):
    """Just enough metadata for pysaml2 to know a service provider."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{html.escape(entity_id)}">
  <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"
      AuthnRequestsSigned="false" WantAssertionsSigned="true">
    <md:NameIDFormat>{saml.NAMEID_FORMAT_PERSISTENT}</md:NameIDFormat>
    <md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location="{html.escape(acs_url)}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"""


@contextlib.contextmanager
def clock_shifted(seconds):
    """pysaml2 reads the clock only through `saml2.time_util` (`time.gmtime`
    for IssueInstant, NotBefore and AuthnInstant, `datetime.now` for
    NotOnOrAfter): shift both there, as if this IdP's clock were off."""

    class ShiftedTime:
        def gmtime(self, secs=None):
            return time.gmtime(time.time() + seconds if secs is None else secs)

        def __getattr__(self, name):
            return getattr(time, name)

    class ShiftedDatetime(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime.now(tz) + datetime.timedelta(seconds=seconds)

    old_time, old_datetime = saml2.time_util.time, saml2.time_util.datetime
    saml2.time_util.time, saml2.time_util.datetime = ShiftedTime(), ShiftedDatetime
    try:
        yield
    finally:
        saml2.time_util.time, saml2.time_util.datetime = old_time, old_datetime


# -- finding elements in serialised XML -------------------------------------
#
# The XML Signature Wrapping modes move signed elements around. Parsing and
# serialising again could change what the signature covers (prefixes,
# whitespace, attribute order), so they cut and splice the text pysaml2 and
# xmlsec1 made, byte for byte, with these.


class Element:
    """One element of a serialised document: `doc[start:end]`."""

    def __init__(self, doc, start, end, name):
        self.doc, self.start, self.end, self.name = doc, start, end, name

    @property
    def text(self):
        return self.doc[self.start : self.end]

    @property
    def prefix(self):
        return self.name.split(":")[0] if ":" in self.name else ""

    def attribute(self, name):
        open_tag = self.doc[self.start : self.doc.index(">", self.start)]
        m = re.search(rf'\s{re.escape(name)}="([^"]*)"', open_tag)
        return html.unescape(m.group(1)) if m else None


def find_elements(doc, local_name, namespace, start=0, end=None):
    """The elements `{namespace}local_name` within `doc[start:end]`, in
    document order. The prefixes bound to `namespace` anywhere in `doc`
    count (pysaml2 binds each namespace once, on the root element). An
    element must not contain another of its name (nothing pysaml2 makes
    does)."""
    end = len(doc) if end is None else end
    names = {p for p, uri in re.findall(r'\sxmlns:([\w.-]+)="([^"]*)"', doc) if uri == namespace}
    names = {f"{p}:{local_name}" for p in names}
    if re.search(rf'\sxmlns="{re.escape(namespace)}"', doc):
        names.add(local_name)
    found = []
    for name in names:
        for m in re.compile(rf"<{re.escape(name)}[\s/>]").finditer(doc, start, end):
            open_end = doc.index(">", m.start())
            if doc[open_end - 1] == "/":
                close_end = open_end + 1
            else:
                close = f"</{name}>"
                close_end = doc.index(close, open_end) + len(close)
            found.append(Element(doc, m.start(), close_end, name))
    found.sort(key=lambda e: e.start)
    return found


def only(elements, what):
    if len(elements) != 1:
        raise RuntimeError(f"expected one {what}, found {len(elements)}")
    return elements[0]


def check_prefixes(fragment, fragment_doc, target_doc):
    """Fails unless each prefix that the tags of `fragment` (cut from
    `fragment_doc`) use, on elements or attributes, but do not declare is
    bound to the same namespace in `target_doc`, where it is to be pasted."""
    used = set()
    for tag in re.findall(r"<[^>]*>", fragment):
        used.update(re.findall(r"^</?([\w.-]+):", tag))
        used.update(re.findall(r"\s([\w.-]+):[\w.-]+=", tag))
    used.discard("xmlns")
    for prefix in used:
        if re.search(rf'\sxmlns:{re.escape(prefix)}="', fragment):
            continue
        pattern = rf'\sxmlns:{re.escape(prefix)}="([^"]*)"'
        theirs, ours = re.search(pattern, fragment_doc), re.search(pattern, target_doc)
        if not theirs or not ours or theirs.group(1) != ours.group(1):
            raise RuntimeError(f"prefix {prefix!r} is not bound alike in both responses")


def replace_text(doc, element, text):
    """`doc` with the text content of the childless `element` replaced."""
    inner_start = doc.index(">", element.start) + 1
    inner_end = doc.rindex("</", element.start, element.end)
    return doc[:inner_start] + html.escape(text, quote=False) + doc[inner_end:]


# -- the identity provider --------------------------------------------------


class BadRequest(Exception):
    """Answered with 400 and the message, as an IdP's error page."""


class Idp:
    def __init__(self, base_url, sp_entity_id, acs_url, directory):
        self.base_url = base_url
        self.entity_id = f"{base_url}/metadata"
        self.sso_url = f"{base_url}/sso"
        self.sp_entity_id = sp_entity_id
        self.acs_url = acs_url
        self.lock = threading.Lock()
        self.person = None
        self.evil = copy.deepcopy(DEFAULT_EVIL)
        self.mode = "valid"
        self.last_response = ""
        key_file, cert_file = make_key_and_cert(directory)
        with open(cert_file) as f:
            self.cert_pem = f.read()
        self.config = IdPConfig()
        self.config.load(
            {
                "entityid": self.entity_id,
                "service": {
                    "idp": {
                        "name": "Cloister test IdP",
                        "endpoints": {
                            "single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT)],
                        },
                        "name_id_format": [saml.NAMEID_FORMAT_PERSISTENT],
                        "want_authn_requests_signed": False,
                        "policy": {
                            "default": {
                                "lifetime": {"minutes": 60},
                                "name_form": saml.NAME_FORMAT_URI,
                                "fail_on_missing_requested": False,
                            },
                        },
                    },
                },
                "key_file": key_file,
                "cert_file": cert_file,
                "xmlsec_binary": shutil.which("xmlsec1") or "/usr/bin/xmlsec1",
                "signing_algorithm": SIG_RSA_SHA256,
                "digest_algorithm": DIGEST_SHA256,
                "metadata": {
                    "inline": [
                        sp_metadata(sp_entity_id, acs_url),
                        sp_metadata(OTHER_SP_ENTITY_ID, acs_url),
                    ]
                },
            }
        )
        self.server = Server(config=self.config)
        # `Assertion.construct` takes the converters from here.
        self.server.config.attribute_converters = [PassThroughConverter()]

    def metadata(self):
        return create_metadata_string(None, config=self.config, sign=False).decode()

    def authn_response(self, person, in_response_to, acs_url, sign_response, sign_assertion, audience=None):
        """pysaml2's Response for `person`, as XML text."""
        sp = audience or self.sp_entity_id
        name_id = saml.NameID(
            format=saml.NAMEID_FORMAT_PERSISTENT,
            name_qualifier=self.entity_id,
            sp_name_qualifier=sp,
            text=person["name_id"],
        )
        response = self.server.create_authn_response(
            identity=person["attributes"],
            in_response_to=in_response_to,
            destination=acs_url,
            sp_entity_id=sp,
            name_id=name_id,
            authn={"class_ref": saml.AUTHN_PASSWORD_PROTECTED, "authn_auth": self.entity_id},
            sign_response=sign_response,
            sign_assertion=sign_assertion,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        return str(response)

    def error_response(self, in_response_to, acs_url):
        """A signed Response without an assertion: Responder/AuthnFailed."""
        response = self.server.create_error_response(
            in_response_to,
            acs_url,
            # Top-level Responder, second-level AuthnFailed.
            (STATUS_AUTHN_FAILED, "no one signs in at this IdP yet"),
            sign=True,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        return str(response)

    def response_for(self, mode, in_response_to, acs_url):
        person = self.person
        if person is None:
            return self.error_response(in_response_to, acs_url)
        if mode == "valid":
            return self.authn_response(person, in_response_to, acs_url, True, True)
        if mode == "assertion_signed":
            return self.authn_response(person, in_response_to, acs_url, False, True)
        if mode == "response_signed":
            return self.authn_response(person, in_response_to, acs_url, True, False)
        if mode == "unsigned":
            return self.authn_response(person, in_response_to, acs_url, False, False)
        if mode == "wrong_audience":
            return self.authn_response(person, in_response_to, acs_url, True, True, audience=OTHER_SP_ENTITY_ID)
        if mode == "expired":
            # Made two hours ago, for the usual hour: it ran out an hour ago.
            with clock_shifted(-2 * 3600):
                return self.authn_response(person, in_response_to, acs_url, True, True)
        if mode == "tampered":
            doc = self.authn_response(person, in_response_to, acs_url, True, True)
            name_id = only(find_elements(doc, "NameID", NS_SAML), "NameID")
            return replace_text(doc, name_id, self.evil["name_id"])
        if mode.startswith("xsw_"):
            return self.wrapped(mode, person, in_response_to, acs_url)
        raise ValueError(f"unknown mode {mode!r}")

    def wrapped(self, mode, person, in_response_to, acs_url):
        """XML Signature Wrapping: a Response (unsigned) whose one assertion,
        the legitimate person's, is signed, rearranged with an unsigned
        assertion for the evil person that pysaml2 made alike (same
        InResponseTo, Recipient, Audience, times)."""
        doc = self.authn_response(person, in_response_to, acs_url, False, True)
        signed = only(find_elements(doc, "Assertion", NS_SAML), "Assertion")
        signature = only(find_elements(doc, "Signature", NS_DS, signed.start, signed.end), "ds:Signature")
        evil_doc = self.authn_response(self.evil, in_response_to, acs_url, False, False)
        evil_el = only(find_elements(evil_doc, "Assertion", NS_SAML), "evil Assertion")
        check_prefixes(evil_el.text, evil_doc, doc)
        evil = evil_el.text
        if mode == "xsw_sibling":
            # XSW3: the evil assertion first, the signed one after it.
            return doc[: signed.start] + evil + doc[signed.start :]
        if mode == "xsw_same_id":
            # The same, but the evil assertion has the signed one's ID.
            evil = re.sub(r'\sID="[^"]*"', f' ID="{signed.attribute("ID")}"', evil, count=1)
            return doc[: signed.start] + evil + doc[signed.start :]
        if mode == "xsw_extensions":
            # XSW7: the signed assertion, whole, in a samlp:Extensions of the
            # Response (after Issuer, before Status, where the schema has
            # it); the evil assertion where the signed one was.
            status = only(find_elements(doc, "Status", NS_SAMLP), "samlp:Status")
            extensions = f"<{status.prefix}:Extensions>{signed.text}</{status.prefix}:Extensions>"
            return (
                doc[: status.start]
                + extensions
                + doc[status.start : signed.start]
                + evil
                + doc[signed.end :]
            )
        if mode == "xsw_wrapped":
            # XSW4, schema-valid: the evil assertion where the signed one
            # was, and the signed one, whole, inside it, in a saml:Advice
            # (after Conditions, before the statements, where the schema
            # has it).
            conditions = only(
                find_elements(evil_doc, "Conditions", NS_SAML, evil_el.start, evil_el.end), "evil Conditions"
            )
            advice = f"<{evil_el.prefix}:Advice>{signed.text}</{evil_el.prefix}:Advice>"
            evil = evil_doc[evil_el.start : conditions.end] + advice + evil_doc[conditions.end : evil_el.end]
            return doc[: signed.start] + evil + doc[signed.end :]
        if mode == "xsw_signature_object":
            # XSW8: the evil assertion where the signed one was, carrying the
            # signed one's ds:Signature (moved there, after its saml:Issuer),
            # in which a ds:Object holds the original assertion without that
            # signature. The Reference is still to the original's ID. A
            # verifier whose enveloped-signature transform only strips a
            # Signature found inside the referenced element gets the old
            # digest; xmlsec1's drops the whole Signature subtree from what
            # the Reference selects, the Object and the assertion in it too,
            # and so fails the digest.
            original = doc[signed.start : signature.start] + doc[signature.end : signed.end]
            close = f"</{signature.name}>"
            obj = f"<{signature.prefix}:Object>{original}</{signature.prefix}:Object>"
            moved = signature.text[: -len(close)] + obj + close
            issuer = find_elements(evil_doc, "Issuer", NS_SAML, evil_el.start, evil_el.end)[0]
            evil = evil_doc[evil_el.start : issuer.end] + moved + evil_doc[issuer.end : evil_el.end]
            return doc[: signed.start] + evil + doc[signed.end :]
        raise ValueError(f"unknown mode {mode!r}")

    # -- requests -----------------------------------------------------------

    def sso(self, query):
        """The POST-binding page answering an AuthnRequest."""
        if "SAMLRequest" not in query:
            raise BadRequest("no SAMLRequest")
        relay_state = query.get("RelayState", [None])[0]
        try:
            request = self.server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        except Exception as e:
            log.exception("bad AuthnRequest")
            raise BadRequest(f"bad AuthnRequest: {type(e).__name__}: {e}")
        if request is None:
            raise BadRequest("bad AuthnRequest (pysaml2 rejected it, see the log)")
        message = request.message
        issuer = message.issuer.text.strip() if message.issuer is not None and message.issuer.text else None
        if issuer != self.sp_entity_id:
            raise BadRequest(f"unknown service provider {issuer!r} (I know {self.sp_entity_id!r})")
        acs_url = message.assertion_consumer_service_url or self.acs_url
        if acs_url != self.acs_url:
            raise BadRequest(f"AssertionConsumerServiceURL {acs_url!r} is not the SP's {self.acs_url!r}")
        if message.protocol_binding and message.protocol_binding != BINDING_HTTP_POST:
            raise BadRequest(f"ProtocolBinding {message.protocol_binding!r}: only HTTP-POST")
        log.info("AuthnRequest %s from %s, mode %s", message.id, issuer, self.mode)
        xml = self.response_for(self.mode, message.id, acs_url)
        self.last_response = xml
        form = http_form_post_message(xml, html.escape(acs_url, quote=True), relay_state or "", typ="SAMLResponse")
        return form["data"]

    def unsolicited(self, relay_state):
        if self.person is None:
            raise BadRequest("no one signs in yet: POST /control/next-login first")
        xml = self.authn_response(self.person, None, self.acs_url, True, True)
        self.last_response = xml
        answer = {"action": self.acs_url, "SAMLResponse": base64.b64encode(xml.encode()).decode()}
        if relay_state is not None:
            answer["RelayState"] = relay_state
        return answer


def person_from(body):
    name_id = body.get("name_id")
    attributes = body.get("attributes") or {}
    if not isinstance(name_id, str) or not name_id:
        raise BadRequest("name_id: a non-empty string")
    if not isinstance(attributes, dict):
        raise BadRequest("attributes: an object of lists of strings")
    clean = {}
    for name, values in attributes.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise BadRequest(f"attributes.{name}: a list of strings")
        clean[name] = values
    return {"name_id": name_id, "attributes": clean}


class Handler(BaseHTTPRequestHandler):
    idp = None  # set in main

    def log_message(self, format, *args):
        log.info("%s", format % args)

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def dispatch(self, method):
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        idp = self.idp
        try:
            body = {}
            if method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError as e:
                    raise BadRequest(f"not JSON: {e}")
            with idp.lock:
                route = (method, url.path)
                if route == ("GET", "/metadata"):
                    return self.reply(200, idp.metadata(), "application/samlmetadata+xml")
                if route == ("GET", "/sso"):
                    return self.reply(200, idp.sso(query), "text/html; charset=utf-8")
                if route == ("POST", "/control/next-login"):
                    idp.person = person_from(body)
                    log.info("next login: %s", idp.person)
                    return self.json(idp.person)
                if route == ("POST", "/control/evil"):
                    idp.evil = person_from(body)
                    return self.json(idp.evil)
                if route == ("POST", "/control/mode"):
                    mode = body.get("mode")
                    if mode not in MODES:
                        raise BadRequest(f"mode {mode!r}: one of {', '.join(MODES)}")
                    idp.mode = mode
                    log.info("mode: %s", mode)
                    return self.json({"mode": mode})
                if route == ("GET", "/control/unsolicited"):
                    return self.json(idp.unsolicited(query.get("relay_state", [None])[0]))
                if route == ("GET", "/control/last-response"):
                    return self.json({"xml": idp.last_response})
                if route == ("GET", "/control/certificate"):
                    return self.json({"pem": idp.cert_pem})
            self.reply(404, f"no {method} {url.path}\n", "text/plain; charset=utf-8")
        except BadRequest as e:
            log.warning("400 %s %s: %s", method, url.path, e)
            if url.path.startswith("/control/"):
                self.json({"error": str(e)}, 400)
            else:
                self.reply(400, f"{e}\n", "text/plain; charset=utf-8")
        except Exception:
            log.exception("500 %s %s", method, url.path)
            self.reply(500, traceback.format_exc(), "text/plain; charset=utf-8")

    def json(self, value, status=200):
        self.reply(status, json.dumps(value), "application/json")

    def reply(self, status, text, content_type):
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)


def main():
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pysaml2 logs every step at INFO.
    logging.getLogger("saml2").setLevel(logging.DEBUG if os.environ.get("SAML_IDP_DEBUG") else logging.WARNING)
    sp_entity_id = os.environ["SAML_SP_ENTITY_ID"]
    acs_url = os.environ["SAML_SP_ACS_URL"]
    httpd = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("SAML_IDP_PORT") or 0)), Handler)
    httpd.daemon_threads = True
    base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    own_dir = None
    directory = os.environ.get("SAML_IDP_DIR")
    if not directory:
        own_dir = tempfile.TemporaryDirectory(prefix="cloister-saml-idp-")
        directory = own_dir.name
    Handler.idp = Idp(base_url, sp_entity_id, acs_url, directory)

    if os.environ.get("SAML_EXIT_ON_STDIN_EOF") == "1":

        def exit_on_eof():
            while sys.stdin.buffer.read(4096):
                pass
            log.info("stdin closed: exiting")
            if own_dir is not None:
                own_dir.cleanup()
            os._exit(0)

        threading.Thread(target=exit_on_eof, daemon=True).start()

    log.info("entityID %s, SP %s, ACS %s", Handler.idp.entity_id, sp_entity_id, acs_url)
    print(f"IDP {base_url}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
