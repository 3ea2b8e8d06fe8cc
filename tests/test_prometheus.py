"""A real Prometheus server on loopback scrapes a `genint run` job while it generates and trains."""

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from cluster.cli import main
from cluster.examples import write_digits_imagefolder
from tests.conftest import free_ports
from tests.datagen_helpers import save_tiny_biggan

pytestmark = pytest.mark.slow


@pytest.fixture
def prometheus(tmp_path: Path):
    """Prometheus scraping 127.0.0.1:<metrics port> every second; yields (metrics port, query function)."""
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus package is required (make test installs it)"
    metrics_port, web_port = free_ports(2)
    config = {"global": {"scrape_interval": "1s"},
              "scrape_configs": [{"job_name": "genint", "honor_labels": True,
                                  "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{web_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{web_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/-/ready", timeout=1)
            break
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, "prometheus did not become ready"
            time.sleep(0.5)

    def query(expression: str) -> list[dict]:
        url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expression})}"
        answer = json.loads(urllib.request.urlopen(url, timeout=10).read())
        assert answer["status"] == "success"
        return answer["data"]["result"]

    yield metrics_port, query
    server.terminate()
    server.wait(timeout=30)


def test_prometheus_scrapes_generation_and_training(tmp_path, monkeypatch, prometheus):
    metrics_port, query = prometheus
    monkeypatch.chdir(tmp_path)
    write_digits_imagefolder(tmp_path / "digits", image_size=16)
    weights, directions = save_tiny_biggan(tmp_path / "biggan", num_classes=10)
    config = {
        "name": "scraped",
        "output_dir": "out",
        "shards": {"max_samples_per_shard": 50, "prepare": {"original": {"source": "digits", "unit_size": 900}}},
        "datagen": {
            "actors": 1, "device": "cpu", "generator": {"weights": str(weights)}, "directions": {"path": str(directions)},
            "strategy": {"kind": "intervention", "truncation": 0.5, "top_k": 4, "components_per_seed": 2, "seeds_per_class": 20},
            "seeds_per_unit": 5, "batch_size": 10,
        },
        "train": {
            "model": "resnet18", "num_classes": 10, "max_steps": 6, "report_every_steps": 1,
            "data": {"crop_size": 16, "resize_size": 16},
            "optimizer": {"decay_unit": "steps"},
            "streams": {"original": {"batch_size": 8}, "interventional": {"batch_size": 4, "loss_weight": 0.2, "when_short": "wait"}},
        },
        "metrics": {"port": metrics_port},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "job.yaml"]) == 0
    time.sleep(2)  # the last scrape lands
    generated = query('max_over_time(genint_images_generated_total{job="scraped"}[10m])')
    trained = query('max_over_time(genint_samples_trained_total{job="scraped",stream="interventional"}[10m])')
    assert sum(float(series["value"][1]) for series in generated) > 0
    assert sum(float(series["value"][1]) for series in trained) > 0
