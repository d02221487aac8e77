"""Queries through nginx while one node is killed: the requests that fail must be no more than
the requests in flight on that node when it died (docs/deployment.md, "Losing a node").

python3 load.py PUBLIC_URL KEY NODE_PID [seconds] [connections]
Sends the demo question (a cache hit after the first) over `connections` keep-alive connections
for `seconds`; kills NODE_PID with SIGKILL a third of the way in; prints a JSON summary and exits
1 when more requests failed than there were connections (each connection has at most one request
in flight) or when any request after the kill settled failed."""
import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
from collections import Counter

url, key, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 9.0
connections = int(sys.argv[5]) if len(sys.argv) > 5 else 8
target = urllib.parse.urlparse(url)
body = json.dumps({"question": "What is the principle of stationary action?"})
headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}

lock = threading.Lock()
results = []  # (started, finished, status or error)
stop_at = time.monotonic() + seconds
killed_at = None


def worker():
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    while time.monotonic() < stop_at:
        started = time.monotonic()
        try:
            connection.request("POST", "/api/v1/query", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            outcome = response.status
        except Exception as error:  # a connection nginx closed, a timeout
            outcome = type(error).__name__
            connection.close()
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        with lock:
            results.append((started, time.monotonic(), outcome))


threads = [threading.Thread(target=worker) for _ in range(connections)]
for thread in threads:
    thread.start()
time.sleep(seconds / 3)
killed_at = time.monotonic()
os.kill(pid, signal.SIGKILL)
for thread in threads:
    thread.join()

failed = [r for r in results if r[2] != 200]
# A request that began a second after the kill found the node gone: nginx must have sent it
# elsewhere (or known the node was down).
late_failures = [r for r in failed if r[0] > killed_at + 1.0]
summary = {
    "requests": len(results),
    "ok": len(results) - len(failed),
    "failed": len(failed),
    "failed_outcomes": dict(Counter(str(r[2]) for r in failed).most_common()),
    "failed_outcomes_after_kill_settled": dict(Counter(str(r[2]) for r in late_failures).most_common()),
    "failed_after_kill_settled": len(late_failures),
    "connections": connections,
    "requests_per_second": round(len(results) / seconds, 1),
}
print(json.dumps(summary))
sys.exit(0 if len(failed) <= connections and not late_failures and summary["ok"] > 0 else 1)
