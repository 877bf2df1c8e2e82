#!/usr/bin/env python3
"""A real SMTP server for harena-exporter's tests, built on aiosmtpd.

Started by tests/common_smtp/mod.rs; not meant to be run by hand, though it can be:

    python3 smtpd.py --port 0 --messages /tmp/m.jsonl --mode plain

Modes:
  plain     no TLS, AUTH (when --username is given) over the clear connection
  starttls  STARTTLS offered; AUTH offered and required only after STARTTLS
  implicit  TLS from the first byte (SMTPS); AUTH offered at once (aiosmtpd never offers
            AUTH on SMTPS with auth_require_tls=True, see TESTBED.md, so it is off here)

Options:
  --username/--password  require AUTH with these credentials (any other pair gets 535)
  --refuse-rcpt REGEX    answer RCPT with 550 for addresses matching REGEX (re.search)
  --data-delay S         wait S seconds before answering the end of DATA
  --data-reply TEXT      answer the end of DATA with TEXT (e.g. "451 4.3.0 try later")
                         instead of 250; the message is recorded with accepted=false
  --stall S              wait S seconds before every reply, the greeting included

Once listening, prints "READY <port>" on stdout. Every message that reaches the end of
DATA is appended to --messages as one JSON line:

  {"mail_from", "rcpt_tos", "raw", "accepted", "tls", "auth_user", "subject",
   "message_id", "headers": [[name, value]...], "text", "html", "received_at"}

`accepted` is true only when the server answered 250 and the client connection was
still open after the DATA delay, i.e. the 250 could reach the client. The server exits
when its stdin reaches EOF, so it never outlives the test process that started it.
"""

import argparse
import asyncio
import email
import email.policy
import json
import re
import ssl
import sys
import threading
import time

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:  # pragma: no cover - reported by the Rust helper
    print("MISSING aiosmtpd: pip install aiosmtpd", file=sys.stderr, flush=True)
    sys.exit(3)


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--messages", required=True)
    p.add_argument("--mode", choices=["plain", "starttls", "implicit"], default="plain")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--refuse-rcpt")
    p.add_argument("--data-delay", type=float, default=0.0)
    p.add_argument("--data-reply")
    p.add_argument("--stall", type=float, default=0.0)
    return p.parse_args()


ARGS = parse_args()
REFUSE = re.compile(ARGS.refuse_rcpt) if ARGS.refuse_rcpt else None
WRITE_LOCK = threading.Lock()


def part_text(msg, subtype):
    try:
        part = msg.get_body(preferencelist=(subtype,))
    except Exception:  # noqa: BLE001 - a malformed message still gets recorded
        return ""
    if part is None:
        return ""
    try:
        return part.get_content()
    except Exception:  # noqa: BLE001
        return ""


def record(envelope, session, server, accepted):
    content = envelope.original_content or envelope.content or b""
    if isinstance(content, str):
        content = content.encode("utf-8", "replace")
    try:
        msg = email.message_from_bytes(content, policy=email.policy.default)
        headers = [[k, str(v)] for k, v in msg.items()]
        subject = str(msg.get("Subject", ""))
        message_id = str(msg.get("Message-ID", ""))
        text = part_text(msg, "plain")
        html = part_text(msg, "html")
    except Exception as e:  # noqa: BLE001
        print(f"parse message: {e!r}", file=sys.stderr, flush=True)
        headers, subject, message_id, text, html = [], "", "", "", ""
    transport = server.transport
    tls = session.ssl is not None or (
        transport is not None and transport.get_extra_info("ssl_object") is not None
    )
    line = json.dumps(
        {
            "mail_from": envelope.mail_from or "",
            "rcpt_tos": list(envelope.rcpt_tos),
            "raw": content.decode("utf-8", "replace"),
            "accepted": accepted,
            "tls": bool(tls),
            "auth_user": session.auth_data if isinstance(session.auth_data, str) else None,
            "subject": subject,
            "message_id": message_id,
            "headers": headers,
            "text": text,
            "html": html,
            "received_at": time.time(),
        }
    )
    with WRITE_LOCK, open(ARGS.messages, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if REFUSE is not None and REFUSE.search(address):
            return f"550 5.1.1 <{address}>: recipient refused by the test server"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        # Tests that kill the client in the middle of DATA wait for this line.
        print("DATA-START", file=sys.stderr, flush=True)
        try:
            if ARGS.data_delay > 0:
                await asyncio.sleep(ARGS.data_delay)
        except asyncio.CancelledError:
            # The client went away during the delay: its 250 can never arrive.
            record(envelope, session, server, accepted=False)
            raise
        if ARGS.data_reply:
            record(envelope, session, server, accepted=False)
            return ARGS.data_reply
        transport = server.transport
        still_open = transport is not None and not transport.is_closing()
        record(envelope, session, server, accepted=still_open)
        return "250 2.0.0 OK: queued"


def authenticator(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    login = auth_data.login.decode("utf-8", "replace")
    password = auth_data.password.decode("utf-8", "replace")
    ok = login == ARGS.username and password == ARGS.password
    # auth_data becomes session.auth_data: keep only the user name, never the password.
    return AuthResult(success=ok, handled=False, auth_data=login if ok else None)


class TestSMTP(SMTP):
    async def push(self, status):
        if ARGS.stall > 0:
            await asyncio.sleep(ARGS.stall)
        await super().push(status)


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ARGS.cert, ARGS.key)
    return ctx


def smtp_factory():
    kwargs = {"hostname": "harena-test-smtpd", "ident": "harena test smtpd"}
    if ARGS.mode == "starttls":
        kwargs["tls_context"] = tls_context()
        kwargs["require_starttls"] = True
    if ARGS.username is not None:
        kwargs["authenticator"] = authenticator
        kwargs["auth_required"] = True
        kwargs["auth_require_tls"] = ARGS.mode == "starttls"
    return TestSMTP(Handler(), **kwargs)


def watch_stdin(loop, stop):
    # EOF on stdin: the test process is gone (or dropped its SmtpServer).
    try:
        while sys.stdin.buffer.read(1024):
            pass
    except Exception:  # noqa: BLE001
        pass
    loop.call_soon_threadsafe(stop.set)


async def main():
    loop = asyncio.get_running_loop()
    ssl_ctx = tls_context() if ARGS.mode == "implicit" else None
    server = await loop.create_server(
        smtp_factory, host=ARGS.host, port=ARGS.port, ssl=ssl_ctx, reuse_address=True
    )
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    stop = asyncio.Event()
    threading.Thread(target=watch_stdin, args=(loop, stop), daemon=True).start()
    async with server:
        await stop.wait()


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # aiosmtpd warns about its own use of a deprecated attribute on every AUTH.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
