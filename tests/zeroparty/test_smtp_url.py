"""``ZEROPARTY_SMTP_URL`` is read completely when the settings are built, by the same
function the SMTP transport builds from: a typo stops ``serve`` with one line instead of
starting a site that never sends a mail, and a login never crosses the network in clear."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.hosts import Host
from zeroparty.mail import SmtpEndpoint, SmtpTransport, SmtpUrlError, parse_smtp_url
from zeroparty.settings import Settings, SettingsError

SHAPE = (
    "ZEROPARTY_SMTP_URL must look like smtp://[user:password@]host[:port][?starttls=1] "
    "or smtps://[user:password@]host[:port]"
)
CLEAR_TEXT = (
    "ZEROPARTY_SMTP_URL: refusing to send the SMTP password in clear text to {host}; "
    "use ?starttls=1 or smtps:// (plain smtp:// with a login is allowed only to loopback)"
)

BAD = [
    ("http://relay.example", SHAPE),
    ("smtp//relay.example", SHAPE),
    ("smtp:/relay.example", SHAPE),
    ("relay.example:587", SHAPE),
    ("smtp://:587", "ZEROPARTY_SMTP_URL: the host is missing or not a valid host name"),
    ("smtp://relay example", "ZEROPARTY_SMTP_URL: the host is missing or not a valid host name"),
    ("smtp://relay..example", "ZEROPARTY_SMTP_URL: the host is missing or not a valid host name"),
    ("smtp://relay.example:58x", "ZEROPARTY_SMTP_URL: the port must be a number from 1 to 65535"),
    ("smtp://relay.example:99999", "ZEROPARTY_SMTP_URL: the port must be a number from 1 to 65535"),
    ("smtp://relay.example:0", "ZEROPARTY_SMTP_URL: the port must be a number from 1 to 65535"),
    ("smtp://relay.example/mail", "ZEROPARTY_SMTP_URL: no path or #fragment is allowed"),
    ("smtp://relay.example#x", "ZEROPARTY_SMTP_URL: no path or #fragment is allowed"),
    ("smtp://relay.example?startls=1", "ZEROPARTY_SMTP_URL: unknown parameter(s) startls"),
    ("smtp://relay.example?tls=1&ssl=1", "ZEROPARTY_SMTP_URL: unknown parameter(s) ssl, tls"),
    ("smtp://relay.example?starttls=on", "ZEROPARTY_SMTP_URL: starttls must be 1 or 0"),
    ("smtp://relay.example?starttls", "ZEROPARTY_SMTP_URL: starttls must be 1 or 0"),
    ("smtp://relay.example?starttls=1&starttls=0", "ZEROPARTY_SMTP_URL: starttls is given more"),
    ("smtps://relay.example?starttls=1", "ZEROPARTY_SMTP_URL: smtps:// is TLS from the start"),
    ("smtp://u@relay.example?starttls=1", "ZEROPARTY_SMTP_URL: give both a user and a password"),
    ("smtp://:pw@relay.example?starttls=1", "ZEROPARTY_SMTP_URL: give both a user and a password"),
    ("smtp://relay.example?from=a%40b.example", "ZEROPARTY_SMTP_URL: ?from= is not supported"),
    # a login over plain smtp:// to anything but loopback
    ("smtp://u:s3cret@relay.example:587", CLEAR_TEXT.format(host="relay.example")),
    ("smtp://u:s3cret@relay.example?starttls=0", CLEAR_TEXT.format(host="relay.example")),
    ("smtp://u:s3cret@10.0.0.5:25", CLEAR_TEXT.format(host="10.0.0.5")),
    ("smtp://u:s3cret@localhost.example", CLEAR_TEXT.format(host="localhost.example")),
]

GOOD = [
    ("smtp://relay.example", SmtpEndpoint("relay.example", 25, False, False)),
    ("smtp://relay.example:2525/", SmtpEndpoint("relay.example", 2525, False, False)),
    ("smtp://mail_relay:25", SmtpEndpoint("mail_relay", 25, False, False)),
    ("smtps://relay.example", SmtpEndpoint("relay.example", 465, True, False)),
    ("SMTP://Relay.Example:587?starttls=1", SmtpEndpoint("relay.example", 587, False, True)),
    ("smtp://relay.example?starttls=0", SmtpEndpoint("relay.example", 25, False, False)),
    (
        "smtp://u%40x:p%3Aw@relay.example:587?starttls=true",
        SmtpEndpoint("relay.example", 587, False, True, "u@x", "p:w"),
    ),
    ("smtps://u:pw@relay.example", SmtpEndpoint("relay.example", 465, True, False, "u", "pw")),
    # plain smtp:// with a login stays on this machine
    ("smtp://u:pw@127.0.0.1:1025", SmtpEndpoint("127.0.0.1", 1025, False, False, "u", "pw")),
    ("smtp://u:pw@127.9.9.9", SmtpEndpoint("127.9.9.9", 25, False, False, "u", "pw")),
    ("smtp://u:pw@[::1]:25", SmtpEndpoint("::1", 25, False, False, "u", "pw")),
    ("smtp://u:pw@localhost", SmtpEndpoint("localhost", 25, False, False, "u", "pw")),
]


@pytest.mark.parametrize(("url", "message"), BAD)
def test_a_bad_smtp_url_is_refused_by_the_settings(url: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"ZEROPARTY_SMTP_URL": url})
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
    assert "s3cret" not in str(raised.value)  # the URL (and its password) is never repeated
    with pytest.raises(SmtpUrlError) as by_transport:
        SmtpTransport(url)
    assert str(by_transport.value) == str(raised.value)  # one reading of the URL


@pytest.mark.parametrize(("url", "endpoint"), GOOD)
def test_a_good_smtp_url_is_read(url: str, endpoint: SmtpEndpoint) -> None:
    assert Settings.from_env({"ZEROPARTY_SMTP_URL": url}).smtp_url == url
    assert parse_smtp_url(url) == endpoint
    transport = SmtpTransport(url)
    assert (transport.host, transport.port, transport.implicit_tls, transport.starttls) == (
        endpoint.host,
        endpoint.port,
        endpoint.implicit_tls,
        endpoint.starttls,
    )
    assert (transport.username, transport.password) == (endpoint.username, endpoint.password)


def test_the_password_is_not_in_the_endpoint_repr() -> None:
    assert "pw" not in repr(parse_smtp_url("smtps://u:pw@relay.example"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "smtp://relay.example?startls=1",
            "ZEROPARTY_SMTP_URL: unknown parameter(s) startls (the only one is starttls=1)",
        ),
        ("smtp://u:s3cret@relay.example:587", CLEAR_TEXT.format(host="relay.example")),
    ],
)
def test_serve_refuses_to_start_with_one_line(tmp_path: Path, url: str, message: str) -> None:
    host = Host(tmp_path / "host", ZEROPARTY_SMTP_URL=url)
    result = host.run("serve")
    assert result.returncode == 2
    assert result.stderr == f"error: {message}\n"
    assert result.stdout == ""
    assert sorted(p.name for p in host.folder.iterdir()) == []  # nothing made, nothing served
