#!/usr/bin/env python3
"""The quiet app's load over one keep-alive connection that a flooded app's requests used
first, as a load balancer's pooled connection to a node carries requests for many apps.

Sends one request for QUIET_HOST (so the quiet app counts as being served), PRIME requests
for FLOOD_HOST (they go to the node's worker process and take the connection to the slow
lane), then requests for QUIET_HOST one after another for SECONDS, and prints their p50 and
p99 in wrk's format (only the quiet requests after the flood's are counted).

Usage: shared-connection.py HOST:PORT SECONDS [QUIET_HOST] [FLOOD_HOST] [PRIME]
Loopback only; it stops by itself.
"""
import http.client
import sys
import time

address, seconds = sys.argv[1], float(sys.argv[2])
quiet = sys.argv[3] if len(sys.argv) > 3 else "quiet.localhost"
flood = sys.argv[4] if len(sys.argv) > 4 else "flood.localhost"
prime = int(sys.argv[5]) if len(sys.argv) > 5 else 20
host, port = address.rsplit(":", 1)
connection = http.client.HTTPConnection(host, int(port), timeout=30)


def get(name):
    connection.request("GET", "/", headers={"Host": name})
    response = connection.getresponse()
    response.read()
    return response.status


get(quiet)
for _ in range(prime):
    get(flood)
latencies = []
end = time.monotonic() + seconds
while time.monotonic() < end:
    started = time.monotonic()
    if get(quiet) != 200:
        sys.exit("the quiet app answered with an error")
    latencies.append(time.monotonic() - started)
latencies.sort()
print(f"{len(latencies)} requests")
for share in (50, 99):
    print(f"    {share}%    {latencies[len(latencies) * share // 100] * 1e6:.2f}us")
