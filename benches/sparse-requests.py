#!/usr/bin/env python3
"""A quiet app's sparse traffic: one request, on a new connection, every GAP seconds for
SECONDS, as a rarely used app sees it. Prints how many it sent and their p50 and p99 in
wrk's format (with fewer than 100 requests the p99 is the slowest).

Usage: sparse-requests.py HOST:PORT SECONDS GAP [HOST_HEADER]
Loopback only; it stops by itself.
"""
import http.client
import sys
import time

address, seconds, gap = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
name = sys.argv[4] if len(sys.argv) > 4 else "quiet.localhost"
host, port = address.rsplit(":", 1)

latencies = []
end = time.monotonic() + seconds
while time.monotonic() < end:
    started = time.monotonic()
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/", headers={"Host": name})
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status != 200:
        sys.exit("the quiet app answered with an error")
    latencies.append(time.monotonic() - started)
    time.sleep(max(0.0, gap - (time.monotonic() - started)))
latencies.sort()
print(f"{len(latencies)} requests")
for share in (50, 99):
    print(f"    {share}%    {latencies[min(len(latencies) - 1, len(latencies) * share // 100)] * 1e6:.2f}us")
