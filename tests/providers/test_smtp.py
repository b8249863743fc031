"""The SMTP driver against a real aiosmtpd server on loopback: plain, STARTTLS and
implicit TLS with a private CA made here, AUTH checked by aiosmtpd's authenticator, and
handlers answering 4xx, 5xx and 535 or hanging after DATA."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import email
import email.policy
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otpgate import apikeys
from otpgate.clock import FrozenClock
from otpgate.drivers import open_driver
from otpgate.drivers.base import Driver
from otpgate.drivers.smtp import SmtpDriver
from otpgate.errors import (
    BrokenDriverError,
    ConfigurationError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    UnknownOutcomeError,
)
from tests.integration.conftest import START, code_in, runtime_of
from tests.providers.conftest import CODE, EMAIL, context, email_message, message

USER, PASSWORD = "otpgate", "s3cret-pass"
SENDER = "no-reply@acme.example"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    peer: Any
    tls: bool
    login: str | None

    def parsed(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it is given and refuses as a server would,
    by recipient: ``nobody@`` (550), ``moved@`` (551), ``bad@`` (553), ``busy@`` (451),
    ``spam@`` (554 after DATA), ``hang@`` (no answer after DATA); and the sender
    ``blocked@`` (553 at MAIL)."""

    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_MAIL(self, server: SMTPServer, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if address.startswith("blocked@"):
            return "553 5.7.1 Sender address rejected: not owned by user"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: SMTPServer, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        answers = {"nobody": "550 5.1.1 <nobody@example.com>: Recipient address rejected",
                   "moved": "551 5.1.6 User not local", "bad": "553 5.1.3 Bad address",
                   "busy": "451 4.3.0 Try again later"}
        if (answer := answers.get(address.partition("@")[0])) is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session,
                          envelope: Envelope) -> str:
        if envelope.rcpt_tos[0].startswith("hang@"):
            await asyncio.sleep(5)
        if envelope.rcpt_tos[0].startswith("spam@"):
            return "554 5.7.1 Message refused"
        # STARTTLS sets the session's ``ssl``; implicit TLS shows in the transport.
        tls = session.ssl is not None or (
            server.transport is not None
            and server.transport.get_extra_info("ssl_object") is not None)
        login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else None
        self.received.append(Received(
            envelope.mail_from or "", list(envelope.rcpt_tos), envelope.original_content or b"",
            session.peer, tls, login))
        return "250 2.0.0 Ok: queued as 4F2A"

    def authenticate(self, server: SMTPServer, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login.decode(), mechanism))
        ok = (auth_data.login.decode(), auth_data.password.decode()) == (USER, PASSWORD)
        return AuthResult(success=ok, handled=False,
                          auth_data=auth_data.login if ok else None)


@dataclass
class Running:
    port: int
    mailbox: Mailbox
    ca_file: Path | None = None


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server: ssl.SSLContext


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA and a server certificate for localhost and 127.0.0.1 it signed."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "otpgate test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("pki")
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = folder / "server.pem"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(chain)
    return Pki(ca_file, server)


StartServer = Callable[..., Running]


@pytest.fixture
def smtp_server(pki: Pki) -> Iterator[StartServer]:
    """``smtp_server(tls="none"|"starttls"|"tls", auth=False)``: a started aiosmtpd on a
    free loopback port, stopped after the test."""
    started: list[Controller] = []

    def start(tls: str = "none", auth: bool = False) -> Running:
        mailbox = Mailbox()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        options: dict[str, Any] = {"auth_required": auth, "authenticator": mailbox.authenticate,
                                   "auth_require_tls": tls == "starttls"}
        if tls == "starttls":
            options.update(tls_context=pki.server, require_starttls=True)
        if tls == "tls":
            options.update(ssl_context=pki.server)
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        started.append(controller)
        return Running(port, mailbox, None if tls == "none" else pki.ca_file)

    yield start
    for controller in started:
        controller.stop()


def smtp(server: Running, query: str = "", *, credentials: str = f"{USER}:{PASSWORD}@",
         clock: FrozenClock | None = None) -> SmtpDriver:
    options = f"from={SENDER}&timeout=1"
    if server.ca_file is not None:
        options += f"&ca_file={server.ca_file}"
    url = f"smtp://{credentials}127.0.0.1:{server.port}?{options}{query}"
    ctx = context()
    if clock is not None:
        ctx = dataclasses.replace(ctx, clock=clock)
    driver = open_driver(url, ctx)
    assert isinstance(driver, SmtpDriver)
    return driver


async def test_a_plain_message_to_a_loopback_relay_arrives_with_both_parts_and_the_code(
    smtp_server: StartServer,
) -> None:
    server = smtp_server()
    driver = smtp(server, "&tls=none", credentials="")
    receipt = await driver.send(email_message())
    await driver.close()
    [got] = server.mailbox.received
    assert (got.mail_from, got.rcpt_tos, got.tls) == (SENDER, [EMAIL], False)
    mail = got.parsed()
    assert mail["From"] == SENDER
    assert mail["To"] == EMAIL
    assert mail["Subject"] == "Your Acme verification code"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Date"] == "Fri, 15 Jan 2027 08:00:00 +0000"  # the injected clock's time
    assert mail["Message-ID"] == f"<{receipt.provider_id}>"
    assert receipt.provider_id.endswith(".otpgate@acme.example")
    assert mail.get_content_type() == "multipart/alternative"
    plain, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None and html is not None
    assert f"verification code is {CODE}." in plain.get_content()
    assert f"<strong>{CODE}</strong>" in html.get_content()
    assert [part.get_content_type() for part in mail.iter_parts()] == [
        "text/plain", "text/html"]


async def test_the_message_id_stays_the_same_when_a_send_is_redelivered(
    smtp_server: StartServer,
) -> None:
    server = smtp_server()
    driver = smtp(server, "&tls=none", credentials="")
    first = await driver.send(email_message())
    again = await driver.send(email_message())
    resend = await driver.send(email_message(send_no=2))
    await driver.close()
    ids = [got.parsed()["Message-ID"] for got in server.mailbox.received]
    assert ids[0] == ids[1] == f"<{first.provider_id}>" == f"<{again.provider_id}>"
    assert ids[2] == f"<{resend.provider_id}>" != ids[0]


async def test_starttls_with_a_private_ca_and_auth_delivers_the_message(
    smtp_server: StartServer,
) -> None:
    server = smtp_server("starttls", auth=True)
    driver = smtp(server)  # tls=starttls is the default
    await driver.send(email_message())
    await driver.close()
    [got] = server.mailbox.received
    assert got.tls, "the message crossed in clear"
    assert got.login == USER
    assert server.mailbox.logins[0][0] == USER
    assert CODE in got.parsed().get_body(("plain",)).get_content()  # type: ignore[union-attr]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_implicit_tls_with_a_private_ca_delivers_the_message(
    smtp_server: StartServer,
) -> None:
    server = smtp_server("tls", auth=True)
    driver = smtp(server, "&tls=tls")
    await driver.send(email_message())
    await driver.close()
    [got] = server.mailbox.received
    assert got.tls, "the message crossed in clear"
    assert got.login == USER


async def test_a_certificate_not_signed_by_a_trusted_ca_is_a_temporary_failure(
    smtp_server: StartServer,
) -> None:
    server = smtp_server("starttls", auth=True)
    untrusted = Running(server.port, server.mailbox, ca_file=None)
    driver = smtp(untrusted)  # the system's CAs only
    with pytest.raises(TemporaryDeliveryError) as raised:
        await driver.send(email_message())
    await driver.close()
    assert not isinstance(raised.value, UnknownOutcomeError)
    assert server.mailbox.logins == [], "the password went to an unverified server"
    assert server.mailbox.received == []


async def test_a_server_that_offers_no_starttls_is_not_sent_to_in_clear(
    smtp_server: StartServer, pki: Pki,
) -> None:
    server = smtp_server()  # plain only
    driver = smtp(Running(server.port, server.mailbox, pki.ca_file))  # tls=starttls
    with pytest.raises(BrokenDriverError):
        await driver.send(email_message())
    await driver.close()
    assert server.mailbox.logins == []
    assert server.mailbox.received == []


async def test_a_wrong_password_means_a_broken_driver(smtp_server: StartServer) -> None:
    server = smtp_server("starttls", auth=True)
    driver = smtp(server, credentials=f"{USER}:wrong@")
    with pytest.raises(BrokenDriverError) as raised:
        await driver.send(email_message())
    await driver.close()
    assert raised.value.provider_code == "535"
    assert "wrong" not in str(raised.value)


async def test_a_server_that_wants_auth_from_a_driver_without_credentials_is_broken(
    smtp_server: StartServer,
) -> None:
    server = smtp_server("starttls", auth=True)
    driver = smtp(server, credentials="")
    with pytest.raises(BrokenDriverError) as raised:
        await driver.send(email_message())
    await driver.close()
    assert raised.value.provider_code == "530"


@pytest.mark.parametrize(("to", "error", "code"), [
    ("nobody@example.com", PermanentDeliveryError, "550"),
    ("moved@example.com", PermanentDeliveryError, "551"),
    ("bad@example.com", PermanentDeliveryError, "553"),
    ("busy@example.com", TemporaryDeliveryError, "451"),
    ("spam@example.com", PermanentDeliveryError, "554"),
])
async def test_smtp_replies_map_to_outcomes_without_quoting_the_address(
    smtp_server: StartServer, to: str, error: type[Exception], code: str,
) -> None:
    server = smtp_server()
    driver = smtp(server, "&tls=none", credentials="")
    with pytest.raises(error) as raised:
        await driver.send(email_message(to=to))
    assert type(raised.value) is error
    assert getattr(raised.value, "provider_code", None) == code
    assert to.partition("@")[0] not in str(raised.value)
    # The session survives a refusal: the next message goes out on it.
    await driver.send(email_message())
    await driver.close()
    assert len({got.peer for got in server.mailbox.received}) == 1


async def test_a_sender_the_server_refuses_means_a_broken_driver(
    smtp_server: StartServer,
) -> None:
    server = smtp_server()
    url = f"smtp://127.0.0.1:{server.port}?from=blocked@acme.example&tls=none"
    driver = open_driver(url, context())
    with pytest.raises(BrokenDriverError) as raised:
        await driver.send(email_message())
    await driver.close()
    assert raised.value.provider_code == "553"


async def test_no_answer_after_data_is_an_unknown_outcome(smtp_server: StartServer) -> None:
    server = smtp_server()
    driver = smtp(server, "&tls=none&timeout=0.3", credentials="")
    with pytest.raises(UnknownOutcomeError):
        await driver.send(email_message(to="hang@example.com"))
    await driver.close()


async def test_a_refused_connection_is_temporary() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    driver = open_driver(f"smtp://127.0.0.1:{port}?from={SENDER}&tls=none", context())
    with pytest.raises(TemporaryDeliveryError) as raised:
        await driver.send(email_message())
    await driver.close()
    assert not isinstance(raised.value, UnknownOutcomeError)


async def test_sends_reuse_pooled_sessions_up_to_the_pool_size(
    smtp_server: StartServer,
) -> None:
    server = smtp_server("starttls", auth=True)
    driver = smtp(server, "&connections=3")
    for send_no in range(1, 4):
        await driver.send(email_message(send_no=send_no))
    assert len({got.peer for got in server.mailbox.received}) == 1
    assert len(server.mailbox.logins) == 1, "one login for three messages"
    await asyncio.gather(*(driver.send(email_message(send_no=n)) for n in range(4, 16)))
    await driver.close()
    assert len(server.mailbox.received) == 15
    assert len({got.peer for got in server.mailbox.received}) == 3


async def test_a_session_idle_too_long_or_closed_by_the_server_is_replaced(
    smtp_server: StartServer,
) -> None:
    server = smtp_server()
    clock = FrozenClock()
    driver = smtp(server, "&tls=none", credentials="", clock=clock)
    await driver.send(email_message())
    clock.advance(31)
    await driver.send(email_message())
    [idle] = driver._idle
    # The server drops the session behind the pool's back; the next send reconnects.
    assert idle.smtp.transport is not None
    idle.smtp.transport.abort()
    await asyncio.sleep(0)
    await driver.send(email_message())
    await driver.close()
    assert len({got.peer for got in server.mailbox.received}) == 3


async def test_an_sms_is_refused_as_permanent(smtp_server: StartServer) -> None:
    driver = smtp(smtp_server(), "&tls=none", credentials="")
    with pytest.raises(PermanentDeliveryError):
        await driver.send(message("sms"))
    await driver.close()


def test_plain_smtp_to_a_remote_host_is_refused_unless_allowed_by_name() -> None:
    with pytest.raises(ConfigurationError, match="allow_plaintext"):
        open_driver(f"smtp://u:p@smtp.example.com:25?from={SENDER}&tls=none", context())
    driver = open_driver(f"smtp://u:p@smtp.example.com:25?from={SENDER}&tls=none"
                         "&allow_plaintext=true", context())
    assert driver.name == "smtp"


@pytest.mark.parametrize(("url", "port", "tls"), [
    (f"smtp://u:p@smtp.example.com?from={SENDER}", 587, "starttls"),
    (f"smtp://u:p@smtp.example.com:465?from={SENDER}", 465, "tls"),
    (f"smtp://u:p@smtp.example.com?from={SENDER}&tls=tls", 465, "tls"),
    (f"smtp://127.0.0.1?from={SENDER}&tls=none", 25, "none"),
    (f"smtp://{SENDER}:p@smtp.example.com:2525", 2525, "starttls"),
])
def test_the_port_and_tls_follow_each_other_by_default(url: str, port: int, tls: str) -> None:
    driver = open_driver(url, context())
    assert isinstance(driver, SmtpDriver)
    assert (driver._server.port, driver._server.tls) == (port, tls)


@pytest.mark.parametrize("url", [
    "smtp://u:p@smtp.example.com:587",  # no sender
    f"smtp://u:p@smtp.example.com:587?from={SENDER}&tls=ssl",
    f"smtp://u:p@smtp.example.com:587?from={SENDER}&colour=red",
    f"smtp://u:p@smtp.example.com:587?from={SENDER}&ca_file=/nonexistent/ca.pem",
    f"smtp://u:p@smtp.example.com:587?from={SENDER}&connections=0",
    f"smtp://u:p@smtp.example.com:587?from={SENDER}&timeout=-1",
    "smtp://u:p@smtp.example.com:587?from=not-an-address",
    f"smtp://u@smtp.example.com:587?from={SENDER}",  # a user without a password
    f"smtp://u:p@?from={SENDER}",
])
def test_a_bad_smtp_url_is_refused_without_showing_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_driver(url, context())
    assert ":p@" not in str(raised.value)


def test_the_driver_shows_its_url_masked(pki: Pki) -> None:
    driver: Driver = open_driver(f"smtp://{USER}:{PASSWORD}@smtp.example.com:587?from={SENDER}"
                                 f"&ca_file={pki.ca_file}", context())
    assert PASSWORD not in driver.url()
    assert PASSWORD not in repr(driver)
    assert driver.url(privacy=False).startswith(f"smtp://{USER}:{PASSWORD}@")


async def test_a_code_requested_through_the_api_arrives_by_smtp_and_verifies(
    smtp_server: StartServer, make_client: Callable[..., Any],
) -> None:
    """End to end: the dispatcher renders the e-mail (text and HTML) and hands it to the
    SMTP driver; the code in the received message verifies."""
    server = smtp_server("starttls", auth=True)
    url = (f"smtp://{USER}:{PASSWORD}@127.0.0.1:{server.port}?from=Acme%20%3C{SENDER}%3E"
           f"&ca_file={server.ca_file}")
    async with make_client(dev=False, drivers={"email": (url,)}) as client:
        _, key = await apikeys.create(runtime_of(client).backend.store, "shop", START)
        auth = {"authorization": f"Bearer {key}"}
        otp = (await client.post("/v1/otp", json={"to": EMAIL, "locale": "fr"},
                                 headers=auth)).json()
        for _ in range(500):  # bounded polling: the dispatcher runs concurrently
            if server.mailbox.received:
                break
            await asyncio.sleep(0.01)
        [got] = server.mailbox.received
        mail = got.parsed()
        assert mail["From"] == f"Acme <{SENDER}>"
        assert mail["Subject"].startswith("Votre code de vérification")
        plain, html = mail.get_body(("plain",)), mail.get_body(("html",))
        assert plain is not None and html is not None
        code = code_in(plain.get_content())
        assert f"<strong>{code}</strong>" in html.get_content()
        verified = await client.post(f"/v1/otp/{otp['id']}/verify", json={"code": code},
                                     headers=auth)
        assert verified.json()["status"] == "approved"
        for _ in range(500):  # the outcome is recorded just after the server's answer
            [channel] = (await client.get(f"/v1/otp/{otp['id']}", headers=auth)).json()[
                "channels"]
            if channel["status"] == "sent":
                break
            await asyncio.sleep(0.01)
        assert (channel["driver"], channel["status"]) == ("smtp", "sent")
