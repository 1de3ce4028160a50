# The moto AWS emulator on a free loopback port, for meshkit's tests.
# Prints "MESHKIT_MOTO_PORT <port>" once listening; exits when stdin closes (the test
# process ended), so no emulator outlives its test.
import datetime
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


class NormaliseTimestamps:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
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


def exit_when_parent_goes():
    sys.stdin.read()
    os._exit(0)


app = NormaliseTimestamps(DomainDispatcherApplication(create_backend_app))
server = make_server("127.0.0.1", 0, app, threaded=True)
threading.Thread(target=exit_when_parent_goes, daemon=True).start()
print("MESHKIT_MOTO_PORT %d" % server.server_port, flush=True)
server.serve_forever()
