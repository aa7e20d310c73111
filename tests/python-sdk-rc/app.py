"""A Spin 4 app written with the Python SDK on WASI 0.3 release candidates: spin-sdk 4.0.0
(componentize-py 0.23.0, world spin:up/http-trigger@4.0.0, which exports
wasi:http/handler@0.3.0-rc-2026-03-15) and spin-sdk 5.0.0 (componentize-py 0.25.1, world
@4.1.0, which imports the release candidates beside 0.3.0). Served unchanged by Wisp in
crates/cli/tests/spin_sdk.rs.

GET /         random bytes, the clock and the environment through the RC interfaces:
              `rc random=4 clock=ok GREETING=<value>`
POST /echo/.. `method=<m> uri=<uri> body=<body>`, header x-echo = request's x-test
GET /out      POSTs to http://self/echo/inner through the RC HTTP client:
              `outbound status=200 echo=via-self body=<the echo>`
"""

from spin_sdk import http
from spin_sdk.http import Request, Response, send
from spin_sdk.wit.imports import wasi_cli_environment_0_3_0_rc_2026_03_15 as environment
from spin_sdk.wit.imports import wasi_clocks_system_clock_0_3_0_rc_2026_03_15 as clock
from spin_sdk.wit.imports import wasi_random_random_0_3_0_rc_2026_03_15 as random


class HttpHandler(http.Handler):
    async def handle_request(self, request: Request) -> Response:
        if request.uri.startswith("/echo"):
            body = b"method=" + request.method.encode() + b" uri=" + request.uri.encode()
            body += b" body=" + (request.body or b"")
            echo = request.headers.get("x-test", "")
            return Response(200, {"content-type": "text/plain", "x-echo": echo}, body)
        if request.uri.startswith("/out"):
            inner = Request("POST", "http://self/echo/inner", {"x-test": "via-self"}, b"ping")
            answer = await send(inner)
            body = b"outbound status=" + str(answer.status).encode()
            body += b" echo=" + (answer.headers.get("x-echo") or "").encode()
            body += b" body=" + (answer.body or b"")
            return Response(200, {"content-type": "text/plain"}, body)
        count = len(random.get_random_bytes(4))
        clock_ok = "ok" if clock.now().seconds > 0 else "zero"
        greeting = dict(environment.get_environment()).get("GREETING")
        text = f"rc random={count} clock={clock_ok} GREETING={greeting}"
        return Response(200, {"content-type": "text/plain"}, text.encode())
