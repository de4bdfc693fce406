"""A real Prometheus server (Debian's ``prometheus`` package; scripts/test.sh installs it)
on 127.0.0.1, scraping the targets a test gives it every second, queried through its
HTTP API.

- ``prometheus_factory``: ``start(targets, rule_files=())`` → :class:`Prometheus`
  (``.url``, ``.query(expr)``, ``.wait(expr, ok)``, ``.rules()``); stopped at the end
  of the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_env
from tests.support.net import free_port


# no proxy from the environment for loopback calls
_open = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen
    log: Path

    def query(self, expr: str) -> list[dict]:
        """Instant query: ``[{"metric": {labels}, "value": float}, ...]``."""
        q = urllib.parse.urlencode({"query": expr})
        with _open(f"{self.url}/api/v1/query?{q}", timeout=10) as r:
            doc = json.loads(r.read())
        assert doc["status"] == "success", doc
        return [{"metric": x["metric"], "value": float(x["value"][1])} for x in doc["data"]["result"]]

    def wait(self, expr: str, ok=lambda rows: bool(rows), timeout: float = 60.0) -> list[dict]:
        """Poll ``expr`` until ``ok(rows)``; fails with the last rows and the target's
        last scrape error after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        rows: list[dict] = []
        while time.monotonic() < end:
            rows = self.query(expr)
            if ok(rows):
                return rows
            time.sleep(0.5)
        raise AssertionError(f"{expr}: still {rows} after {timeout:g} s; targets: {self.targets()}")

    def rules(self) -> list[dict]:
        """Loaded rules: ``[{"name", "health", "lastError"}]``."""
        with _open(f"{self.url}/api/v1/rules", timeout=10) as r:
            groups = json.loads(r.read())["data"]["groups"]
        return [{"name": x["name"], "health": x["health"], "lastError": x.get("lastError", "")}
                for g in groups for x in g["rules"]]

    def targets(self) -> list[dict]:
        with _open(f"{self.url}/api/v1/targets", timeout=10) as r:
            return [{"url": t["scrapeUrl"], "health": t["health"], "error": t["lastError"]}
                    for t in json.loads(r.read())["data"]["activeTargets"]]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def prometheus_factory(tmp_path):
    binary = shutil.which("prometheus") or require_env("OSSCTL_TEST_PROMETHEUS")
    started: list[Prometheus] = []

    def start(targets: list[str], interval: str = "1s", timeout: str = "1s",
              rule_files: tuple[Path, ...] = ()) -> Prometheus:
        d = tmp_path / f"prometheus-{len(started)}"
        d.mkdir()
        cfg = d / "prometheus.yml"
        rules = "".join(f"  - {json.dumps(str(r))}\n" for r in rule_files)
        cfg.write_text(
            "global:\n"
            f"  scrape_interval: {interval}\n"
            f"  scrape_timeout: {timeout}\n"
            f"  evaluation_interval: {interval}\n"
            + (f"rule_files:\n{rules}" if rules else "")
            + "scrape_configs:\n"
            "  - job_name: ossctl\n"
            "    static_configs:\n"
            f"      - targets: [{', '.join(json.dumps(t) for t in targets)}]\n")
        port = free_port()
        log = d / "prometheus.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={d / 'data'}",
                                     f"--web.listen-address=127.0.0.1:{port}"],
                                    stdout=fh, stderr=subprocess.STDOUT, cwd=d)
        p = Prometheus(f"http://127.0.0.1:{port}", proc, log)
        started.append(p)
        end = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with _open(p.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return p
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > end:
                raise RuntimeError(f"prometheus not ready after 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    yield start
    for p in started:
        p.stop()
