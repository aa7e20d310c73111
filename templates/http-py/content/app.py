from spin_sdk import http
from spin_sdk.http import Request, Response


class IncomingHandler(http.IncomingHandler):
    def handle_request(self, request: Request) -> Response:
        print(f"{request.method} {request.uri}")
        return Response(
            200,
            {"content-type": "text/plain"},
            bytes("Hello from {{project-name}}!\n", "utf-8"),
        )
