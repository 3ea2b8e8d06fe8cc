"""Bad inputs to the cluster commands: ``genint status | logs | stop | list | submit`` (the dashboard
URL, ``--dashboard``), ``scale`` and ``top JOB`` (the Ray cluster address, ``--address``) and
``top --metrics`` (the endpoint).

Each row runs against real servers on loopback started by this module: HTTP servers answering what
a Ray dashboard or a genint job would not (a 404 page, HTML, foreign JSON, 401/403, series without
their labels, an endless body), a socket that accepts and never answers, and a closed port. Exit 2
is a malformed address or flag (usage, ConfigError); exit 1 a well-formed one that does not lead to
a Ray cluster or a genint job. No row reaches ``ray.init``: the addresses are checked first.
"""

import http.server
import socket
import threading

import pytest
import yaml

from tests.bad_input_helpers import BadInput, check_bad_input, table


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> int:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_port


def _answering(status: int, content_type: str, body: str) -> int:
    """A server answering every GET with one response; returns its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):  # keep the test output to the rows
            pass

    return _serve(Handler)


class _EndlessBody(http.server.BaseHTTPRequestHandler):
    """Streams "genint_" lines until the client hangs up."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        line = b'genint_loss{job="j",stream="s"} 1\n' * 30_000
        try:
            while True:
                self.wfile.write(line)
        except OSError:
            pass

    def log_message(self, *args):
        pass


def _silent_port() -> int:
    """A socket that accepts connections (the kernel completes them) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    _silent_port.keep = listener  # alive as long as the module
    return listener.getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


NOT_FOUND = _answering(404, "text/html", "<html><body>Not Found</body></html>")
HTML = _answering(200, "text/html", "<html><body>a web page</body></html>")
FOREIGN_JSON = _answering(200, "application/json", '{"version": "1.0"}')
WANTS_TOKEN = _answering(401, "text/plain", "Unauthorized: Missing authentication token")
REFUSES_TOKEN = _answering(403, "text/plain", "Forbidden: Invalid authentication token")
NO_STREAM_LABEL = _answering(200, "text/plain", '# TYPE genint_images_generated_total counter\n'
                                                 'genint_images_generated_total{job="j",actor="g0"} 3\n')
NO_POOL_LABEL = _answering(200, "text/plain", 'genint_actors{job="j"} 2\n')
ENDLESS = _serve(_EndlessBody)
SILENT = _silent_port()
CLOSED = _closed_port()

VALID_JOB = {"name": "tiny", "output_dir": "out", "train": {"model": "small_cnn", "streams": {"original": {"batch_size": 8}}}}


def _job_config(root) -> None:
    (root / "job.yaml").write_text(yaml.safe_dump(VALID_JOB))


def http_(port: int) -> str:
    return f"http://127.0.0.1:{port}"


DASHBOARD_URL = "is not the Ray dashboard's URL: give http://HOST:8265"
NOT_CLUSTER = "is not a Ray cluster address"

CASES = [
    # -- the dashboard URL: status, logs, stop, list, submit --------------------------------
    BadInput("status-no-address", ["status", "tiny-1"], 2, "no cluster address: pass --dashboard http://HOST:8265 or set RAY_ADDRESS"),
    BadInput("status-not-a-url", ["status", "tiny-1", "--dashboard", "nonsense"], 2, f"--dashboard 'nonsense' {DASHBOARD_URL}"),
    BadInput("logs-scheme-without-host", ["logs", "tiny-1", "--dashboard", "http://"], 2, f"--dashboard 'http://' {DASHBOARD_URL}"),
    BadInput("stop-ftp-url", ["stop", "tiny-1", "--dashboard", "ftp://x"], 2, f"--dashboard 'ftp://x' {DASHBOARD_URL}"),
    BadInput("list-port-out-of-range", ["list", "--dashboard", "http://127.0.0.1:99999"], 2, DASHBOARD_URL),
    BadInput("list-url-with-a-path", ["list", "--dashboard", "http://127.0.0.1:8265/jobs"], 2, DASHBOARD_URL),
    BadInput("status-gcs-address-for-dashboard", ["status", "tiny-1", "--dashboard", "127.0.0.1:6379"], 2, DASHBOARD_URL),
    BadInput("status-ray-address-env-not-a-url", ["status", "tiny-1"], 2, f"RAY_ADDRESS 'nonsense' {DASHBOARD_URL}",
             env={"RAY_ADDRESS": "nonsense"}),
    BadInput("status-closed-port", ["status", "tiny-1", "--dashboard", http_(CLOSED)], 1,
             f"cannot reach a Ray dashboard at {http_(CLOSED)} within 10 s"),
    BadInput("status-silent-server", ["status", "tiny-1", "--dashboard", http_(SILENT)], 1,
             f"cannot reach a Ray dashboard at {http_(SILENT)} within 10 s (no answer)"),
    BadInput("logs-404-page", ["logs", "tiny-1", "--dashboard", http_(NOT_FOUND)], 1,
             f"{http_(NOT_FOUND)} is not a Ray dashboard: GET /api/version answered HTTP 404 text/html"),
    BadInput("list-html-page", ["list", "--dashboard", http_(HTML)], 1, f"{http_(HTML)} is not a Ray dashboard: GET /api/version answered HTTP 200"),
    BadInput("stop-foreign-json", ["stop", "tiny-1", "--dashboard", http_(FOREIGN_JSON)], 1,
             f"{http_(FOREIGN_JSON)} is not a Ray dashboard"),
    BadInput("status-token-required", ["status", "tiny-1", "--dashboard", http_(WANTS_TOKEN)], 1,
             "requires a token and none was sent: set RAY_AUTH_TOKEN"),
    BadInput("list-token-rejected", ["list", "--dashboard", http_(REFUSES_TOKEN)], 1, "rejected the token: set RAY_AUTH_TOKEN",
             env={"RAY_AUTH_TOKEN": "0" * 32}),
    BadInput("submit-not-a-url", ["submit", "job.yaml", "--dashboard", "localhost"], 2, f"--dashboard 'localhost' {DASHBOARD_URL}",
             setup=_job_config),
    BadInput("submit-closed-port", ["submit", "job.yaml", "--dashboard", http_(CLOSED)], 1,
             f"cannot reach a Ray dashboard at {http_(CLOSED)}", setup=_job_config),
    BadInput("status-cluster-address-flag", ["status", "tiny-1", "--address", "127.0.0.1:6379"], 2,
             "takes the Ray dashboard's URL as --dashboard http://HOST:8265; --address is the Ray cluster's address"),
    # -- the Ray cluster address: scale, top JOB ---------------------------------------------
    BadInput("scale-without-a-count", ["scale", "tiny"], 2, "scale: give --datagen N and/or --trainers N"),
    BadInput("scale-dashboard-url", ["scale", "tiny", "--datagen", "2", "--address", "http://127.0.0.1:8265"], 2,
             f"--address 'http://127.0.0.1:8265' {NOT_CLUSTER} (that is the dashboard's URL"),
    BadInput("scale-not-an-address", ["scale", "tiny", "--trainers", "2", "--address", "nonsense"], 2,
             f"--address 'nonsense' {NOT_CLUSTER}: give HOST:6379"),
    BadInput("scale-ray-address-env-is-a-url", ["scale", "tiny", "--datagen", "2"], 2,
             f"RAY_ADDRESS='http://127.0.0.1:8265' {NOT_CLUSTER}", env={"RAY_ADDRESS": "http://127.0.0.1:8265"}),
    BadInput("scale-closed-port", ["scale", "tiny", "--datagen", "2", "--address", f"127.0.0.1:{CLOSED}"], 1,
             f"cannot reach Ray at 127.0.0.1:{CLOSED} within 10 s"),
    BadInput("scale-http-server-for-gcs", ["scale", "tiny", "--datagen", "2", "--address", f"127.0.0.1:{HTML}"], 1,
             f"cannot reach Ray at 127.0.0.1:{HTML} within 10 s"),
    BadInput("scale-ray-client-closed-port", ["scale", "tiny", "--datagen", "2", "--address", f"ray://127.0.0.1:{CLOSED}"], 1,
             f"cannot reach Ray at ray://127.0.0.1:{CLOSED} within 10 s"),
    BadInput("scale-silent-server", ["scale", "tiny", "--datagen", "2", "--address", f"127.0.0.1:{SILENT}"], 1,
             f"cannot reach Ray at 127.0.0.1:{SILENT} within 10 s"),
    BadInput("top-job-closed-port", ["top", "tiny", "--address", f"127.0.0.1:{CLOSED}", "--once"], 1,
             f"cannot reach Ray at 127.0.0.1:{CLOSED} within 10 s"),
    BadInput("top-job-port-out-of-range", ["top", "tiny", "--address", "127.0.0.1:70000", "--once"], 2, NOT_CLUSTER),
    # -- the metrics endpoint: top --metrics ---------------------------------------------------
    BadInput("top-series-without-stream-label", ["top", "--metrics", f"{http_(NO_STREAM_LABEL)}/metrics", "--once"], 1,
             "series genint_images_generated_total has no 'stream' label (labels: actor, job)"),
    BadInput("top-series-without-pool-label", ["top", "--metrics", f"{http_(NO_POOL_LABEL)}/metrics", "--once"], 1,
             "series genint_actors has no 'pool' label"),
    BadInput("top-endless-body", ["top", "--metrics", f"{http_(ENDLESS)}/metrics", "--once"], 1, "answered more than 64 MiB"),
    BadInput("top-html-page", ["top", "--metrics", f"{http_(HTML)}/metrics", "--once"], 1, "serves no genint_ metrics"),
    BadInput("top-file-url", ["top", "--metrics", "file:///etc/hostname", "--once"], 2, "--metrics 'file:///etc/hostname': unknown url type"),
    BadInput("top-interval-inf", ["top", "--metrics", f"{http_(NO_STREAM_LABEL)}/metrics", "--interval", "inf"], 2,
             "--interval must be a number of seconds > 0 and <= 3600 (got inf)"),
    BadInput("top-interval-nan", ["top", "--metrics", f"{http_(NO_STREAM_LABEL)}/metrics", "--interval", "nan"], 2,
             "--interval must be a number of seconds > 0 and <= 3600 (got nan)"),
]


@table(CASES)
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a row sets it where it means to
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ray/auth_token of the machine's
    check_bad_input(case, tmp_path, monkeypatch, capsys)


def test_the_table_covers_every_cluster_command():
    assert {case.argv[0] for case in CASES} == {"status", "logs", "stop", "list", "submit", "scale", "top"}
    assert len({case.id for case in CASES}) == len(CASES) >= 15
