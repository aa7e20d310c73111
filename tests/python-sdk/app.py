"""A Spin app written with the Python SDK (spin-sdk 3.4.1 on PyPI, built with
componentize-py 0.17.2), served unchanged by Wisp in crates/cli/tests/capabilities.rs.

GET /<anything> counts visits of that path in the default key-value store and
answers `<greeting> <visits>` where greeting is the `greeting` variable.
(The SDK's own `sqlite` module does not import with componentize-py 0.17.2:
its bindings module is generated under another name.)
"""

from spin_sdk import http, key_value, variables
from spin_sdk.http import Request, Response


class IncomingHandler(http.IncomingHandler):
    def handle_request(self, request: Request) -> Response:
        path = request.uri
        with key_value.open_default() as store:
            visits = int((store.get(path) or b"0").decode()) + 1
            store.set(path, str(visits).encode())
        greeting = variables.get("greeting")
        body = f"{greeting} {visits}\n"
        return Response(200, {"content-type": "text/plain"}, bytes(body, "utf-8"))
