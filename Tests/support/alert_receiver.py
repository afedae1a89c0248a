"""Receivers that alert tests send to, on loopback; each records what it got, one JSON line a
request, in LOG.

  alert_receiver.py http PORT LOG FAILS
      An HTTP server: answers 500 to the first FAILS requests (to test retries), then 200.
      Each line: {"path", "headers", "body", "status"}.
  alert_receiver.py smtp PORT LOG CERT KEY USER PASSWORD
      aiosmtpd with STARTTLS (required) and AUTH (required, USER/PASSWORD).
      Each line: {"from", "to", "data", "login"}.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def record(log, entry):
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\n")


def http(port, log, fails):
    lock = threading.Lock()
    seen = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode("utf-8", "replace")
            with lock:
                seen[0] += 1
                status = 500 if seen[0] <= fails else 200
                record(log, {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "status": status})
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            reply = b"try again later" if status == 500 else b"ok"
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def smtp(port, log, cert, key, user, password):
    import ssl
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    logins = {}

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
        if ok:
            logins[id(session)] = auth_data.login.decode()
        return AuthResult(success=ok)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            record(log, {"from": envelope.mail_from, "to": envelope.rcpt_tos, "data": envelope.content.decode("utf-8", "replace"),
                         "login": logins.get(id(session)) if session.authenticated else None, "tls": session.ssl is not None})
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            authenticator=authenticator, auth_required=True, auth_require_tls=True)
    controller.start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "http":
        http(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        smtp(int(sys.argv[2]), sys.argv[3], *sys.argv[4:8])
