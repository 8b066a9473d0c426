"""A plain-HTTP relay in front of the supervisor for kubectl, used by bench/records.sh to show
how long kubectl itself takes: the first answer to each ETCDSnapshotFile list URL is kept and
every later one is served from memory at once, so a second `kubectl get` through the relay
costs the server nothing. Everything else (discovery) is forwarded.

    python3 page_cache.py UPSTREAM PORT TOKEN
"""
import http.server
import ssl
import sys
import urllib.request

upstream, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
kept = {}


class Relay(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        accept = self.headers.get("Accept", "*/*")
        key = (self.path, accept)
        body = kept.get(key)
        if body is None:
            req = urllib.request.Request(
                upstream + self.path,
                headers={"Accept": accept, "Authorization": "Bearer " + token},
            )
            body = urllib.request.urlopen(req, context=tls).read()
            if "etcdsnapshotfiles" in self.path:
                kept[key] = body
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("127.0.0.1", port), Relay).serve_forever()
