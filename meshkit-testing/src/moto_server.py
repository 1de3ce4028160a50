# The moto AWS emulator on a free loopback port, for meshkit's tests.
# Prints "MESHKIT_MOTO_PORT <port>" once listening; exits when stdin closes (the test
# process ended), so no emulator outlives its test.
import datetime
import io
import json
import os
import re
import sys
import threading

try:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server
except Exception as e:  # noqa: BLE001 - any import failure means "not installed"
    print("MESHKIT_MOTO_MISSING %r" % (e,), flush=True)
    sys.exit(3)

# App Mesh in moto renders timestamps as "dd/mm/YYYY, HH:MM:SS" strings, which the AWS
# SDKs cannot parse; AWS sends epoch seconds. Rewrite them in every response.
STAMP = re.compile(rb'"(\d{2})/(\d{2})/(\d{4}), (\d{2}):(\d{2}):(\d{2})"')


def epoch(match):
    d, mo, y, h, mi, s = (int(x) for x in match.groups())
    return str(int(datetime.datetime(y, mo, d, h, mi, s).timestamp())).encode()


# meshkit's test extension, not part of any AWS API: the emulator records the
# operation of every request it serves, so a test can compare the calls a spawned
# `meshkit` process made with what `meshkit plan` said it would make.
#   GET /_meshkit/requests     -> JSON list of operation names, in order
#   DELETE /_meshkit/requests  -> forget them
REQUESTS = []
REQUESTS_LOCK = threading.Lock()

APPMESH_KINDS = {
    "meshes": "Mesh",
    "virtualRouters": "VirtualRouter",
    "virtualNodes": "VirtualNode",
    "virtualServices": "VirtualService",
    "routes": "Route",
}


def appmesh_operation(method, path):
    # /v20190125/meshes/{mesh}[/virtualRouter/{vr}/routes[/{route}]] and the like.
    parts = [p for p in path.split("/")[2:] if p]
    kind, named = None, False
    for i, part in enumerate(parts):
        if part in APPMESH_KINDS:
            kind, named = APPMESH_KINDS[part], i + 1 < len(parts)
    if kind is None:
        return None
    if named:
        verb = {"GET": "Describe", "PUT": "Update", "DELETE": "Delete"}.get(method, method)
    else:
        verb = {"GET": "List", "PUT": "Create"}.get(method, method)
    return verb + kind + ("s" if verb == "List" else "")


def operation(environ):
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.split(".")[-1]
    method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
    if path.startswith("/v20190125/"):
        op = appmesh_operation(method, path)
        if op:
            return op
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    for source in (environ.get("QUERY_STRING", ""), body.decode("utf-8", "replace")):
        for pair in source.split("&"):
            if pair.startswith("Action="):
                return pair[len("Action="):]
    return "%s %s" % (method, path)


def requests_endpoint(environ, start_response):
    with REQUESTS_LOCK:
        if environ.get("REQUEST_METHOD") == "DELETE":
            REQUESTS.clear()
        body = json.dumps(REQUESTS).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


class NormaliseTimestamps:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/_meshkit/requests":
            return requests_endpoint(environ, start_response)
        op = operation(environ)
        with REQUESTS_LOCK:
            REQUESTS.append(op)
        seen = {}

        def capture(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, headers
            return lambda data: None

        result = self.app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        body = STAMP.sub(epoch, body)
        headers = [(k, v) for k, v in seen["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(seen["status"], headers)
        return [body]


# moto names every load balancer `loadbalancer/app/...`; AWS names a Network Load
# Balancer `loadbalancer/net/...` (and its listeners and rules after it), which is how
# clients tell the two apart. Rename network load balancers as AWS does.
try:
    from moto.elbv2 import models as elbv2_models

    _create_load_balancer = elbv2_models.ELBv2Backend.create_load_balancer

    def create_load_balancer(self, *args, **kwargs):
        lb = _create_load_balancer(self, *args, **kwargs)
        if lb.type == "network" and ":loadbalancer/app/" in lb.arn:
            old = lb.arn
            lb.arn = old.replace(":loadbalancer/app/", ":loadbalancer/net/")
            self.load_balancers[lb.arn] = self.load_balancers.pop(old)
            self.tagging_service.copy_tags(old, lb.arn)
        return lb

    elbv2_models.ELBv2Backend.create_load_balancer = create_load_balancer
except Exception:  # noqa: BLE001 - an emulator without ELBv2 still serves the rest
    pass


def exit_when_parent_goes():
    sys.stdin.read()
    os._exit(0)


app = NormaliseTimestamps(DomainDispatcherApplication(create_backend_app))
server = make_server("127.0.0.1", 0, app, threaded=True)
threading.Thread(target=exit_when_parent_goes, daemon=True).start()
print("MESHKIT_MOTO_PORT %d" % server.server_port, flush=True)
server.serve_forever()
