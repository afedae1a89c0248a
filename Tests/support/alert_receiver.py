"""Receivers that alert tests send to, on loopback; each records what it got, one JSON line a
request, in LOG.

  alert_receiver.py http PORT LOG FAILS
      An HTTP server: answers 500 to the first FAILS requests (to test retries), then 200.
      Each line: {"path", "headers", "body", "status"}.
  alert_receiver.py lineage PORT LOG FAILS
      As http, and each body is also checked as an OpenLineage RunEvent: rebuilt from the models
      openlineage-python carries (spec 2-0-2: RunEvent, Run, Job, datasets, and the schema,
      outputStatistics and errorMessage facets, whose validators run), serialised again, and
      compared with what was sent, schema URLs included. Each line adds "valid" and "error".
  alert_receiver.py smtp PORT LOG CERT KEY USER PASSWORD
      aiosmtpd with STARTTLS (required) and AUTH (required, USER/PASSWORD).
  alert_receiver.py smtps PORT LOG CERT KEY USER PASSWORD
      The same with TLS from the first byte (SMTPS) instead of STARTTLS.
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


def pruned(v):
    """Without nulls, empty objects and empty lists, as the models' serialiser leaves them out."""
    if isinstance(v, dict):
        v = {k: pruned(x) for k, x in v.items()}
        return {k: x for k, x in v.items() if x is not None and x != {} and x != []}
    if isinstance(v, list):
        return [pruned(x) for x in v]
    return v


def openlineage_check(body):
    from openlineage.client.generated import error_message_run as em
    from openlineage.client.generated import output_statistics_output_dataset as osd
    from openlineage.client.generated import schema_dataset as sd
    from openlineage.client.generated.base import EventType, InputDataset, Job, OutputDataset, Run, RunEvent
    from openlineage.client.serde import Serde

    d = json.loads(body)

    def facets(given, kinds):
        out = {}
        for name, f in (given or {}).items():
            cls = kinds[name]  # a facet Sluice does not set is an error here
            args = {k: v for k, v in f.items() if not k.startswith("_")}
            if cls is sd.SchemaDatasetFacet:
                args["fields"] = [sd.SchemaDatasetFacetFields(**x) for x in args["fields"]]
            facet = cls(**args, producer=f["_producer"])
            assert facet._schemaURL == f["_schemaURL"], f"{name}: _schemaURL {f['_schemaURL']}, the spec's is {facet._schemaURL}"
            out[name] = facet
        return out

    event = RunEvent(
        eventType=EventType[d["eventType"]], eventTime=d["eventTime"], producer=d["producer"],
        run=Run(runId=d["run"]["runId"], facets=facets(d["run"].get("facets"), {"errorMessage": em.ErrorMessageRunFacet})),
        job=Job(namespace=d["job"]["namespace"], name=d["job"]["name"], facets=facets(d["job"].get("facets"), {})),
        inputs=[InputDataset(namespace=i["namespace"], name=i["name"], facets=facets(i.get("facets"), {})) for i in d["inputs"]],
        outputs=[OutputDataset(namespace=o["namespace"], name=o["name"], facets=facets(o.get("facets"), {"schema": sd.SchemaDatasetFacet}),
                               outputFacets=facets(o.get("outputFacets"), {"outputStatistics": osd.OutputStatisticsOutputDatasetFacet}))
                 for o in d["outputs"]])
    assert event.schemaURL == d["schemaURL"], f"schemaURL {d['schemaURL']}, the spec's is {event.schemaURL}"
    again = pruned(json.loads(Serde.to_json(event)))
    assert again == pruned(d), f"not what the models give: {again}"


def http(port, log, fails, lineage=False):
    lock = threading.Lock()
    seen = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode("utf-8", "replace")
            entry = {}
            if lineage:
                try:
                    openlineage_check(body)
                    entry = {"valid": True, "error": None}
                except Exception as e:  # noqa: BLE001 — any failure is the finding
                    entry = {"valid": False, "error": f"{type(e).__name__}: {e}"}
            with lock:
                seen[0] += 1
                status = 500 if seen[0] <= fails else 200
                record(log, {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "status": status, **entry})
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            reply = b"try again later" if status == 500 else b"ok"
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def smtp(port, log, cert, key, user, password, implicit=False):
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
                         "login": logins.get(id(session)) if session.authenticated else None,
                         # STARTTLS sets session.ssl; with SMTPS the socket was TLS from the start.
                         "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None})
            return "250 Message accepted for delivery"

    if implicit:
        # SMTPS: TLS from the first byte (smtps://), no STARTTLS.
        controller = Controller(Handler(), hostname="127.0.0.1", port=port, ssl_context=context,
                                authenticator=authenticator, auth_required=True, auth_require_tls=False)
    else:
        controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                                authenticator=authenticator, auth_required=True, auth_require_tls=True)
    controller.start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode in ("http", "lineage"):
        http(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), lineage=mode == "lineage")
    else:
        smtp(int(sys.argv[2]), sys.argv[3], *sys.argv[4:8], implicit=mode == "smtps")
