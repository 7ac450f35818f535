"""--metrics-file checked by Prometheus' own parser (promtool, Debian's
prometheus package) and --pushgateway against a real Pushgateway started on
127.0.0.1 for the test."""
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import sharded_source

OLD, NEW = "rows:block=50", "cols:block=40"

pytestmark = pytest.mark.skipif(
    (shutil.which("promtool") is None or shutil.which("prometheus-pushgateway") is None)
    and os.environ.get("RESHARD_REQUIRE_PROMETHEUS") != "1",
    reason="promtool/prometheus-pushgateway not installed (scripts/install-deps.sh installs them)")


def samples(text):
    """{name{labels}: value} from exposition text, comments skipped."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def promtool_check(path):
    with open(path, "rb") as f:
        return subprocess.run(["promtool", "check", "metrics"], stdin=f, capture_output=True, text=True)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return sharded_source(tmp_path_factory.mktemp("metrics"), OLD, (503, 211), 6000, seed=7)


@pytest.fixture
def pushgateway(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):  # at most 10 s
            try:
                urllib.request.urlopen(url + "/-/ready", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("prometheus-pushgateway did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_metrics_file_parses_and_the_push_reaches_the_gateway(tmp_path, reshard, source, pushgateway):
    metrics = tmp_path / "reshard.prom"
    report_path = tmp_path / "report.json"
    run = reshard(source, OLD, str(tmp_path / "dst" / "s_{i}.npz"), NEW, ranks=3,
                  extra=["--metrics-file", str(metrics), "--pushgateway", pushgateway, "--report", str(report_path)])
    assert run.returncode == 0, run.stderr
    assert "warning" not in run.stderr
    check = promtool_check(metrics)
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(report_path.read_text())
    got = samples(metrics.read_text())
    assert got["reshard_job_success"] == 1
    assert got["reshard_exit_code"] == 0
    assert got["reshard_entries_read_total"] == report["nnz"]
    assert got["reshard_entries_written_total"] == report["nnz"]
    assert got["reshard_written_bytes_total"] == report["totals"]["bytes_written"]
    assert got["reshard_sent_bytes_total"] == report["totals"]["bytes_sent"]
    assert got["reshard_destination_shards_done"] == got["reshard_destination_shards"] == report["destination_shards"]
    assert got["reshard_shard_imbalance_ratio"] == pytest.approx(report["skew"]["imbalance"])
    assert abs(got["reshard_last_success_timestamp_seconds"] - time.time()) < 120
    assert got['reshard_stage_seconds{stage="write"}'] == pytest.approx(report["seconds"]["write"])
    # The gateway serves what was pushed, under job="mpi_reshard".
    served = urllib.request.urlopen(pushgateway + "/metrics", timeout=10).read().decode()
    pushed = {k: v for k, v in samples(served).items() if 'job="mpi_reshard"' in k}
    read_total = [v for k, v in pushed.items() if k.startswith("reshard_entries_read_total{")]
    assert read_total == [report["nnz"]], served[:2000]
    success = [v for k, v in pushed.items() if k.startswith("reshard_job_success{")]
    assert success == [1]


def test_a_failed_run_keeps_the_last_success_time(tmp_path, reshard, source):
    metrics = tmp_path / "reshard.prom"
    ok = reshard(source, OLD, str(tmp_path / "dst" / "s_{i}.npz"), NEW, extra=["--metrics-file", str(metrics)])
    assert ok.returncode == 0, ok.stderr
    last_success = samples(metrics.read_text())["reshard_last_success_timestamp_seconds"]
    failed = reshard(str(tmp_path / "missing" / "shard_{i}.npz"), OLD, str(tmp_path / "dst2" / "s_{i}.npz"), NEW,
                     extra=["--metrics-file", str(metrics)])
    assert failed.returncode == 2
    got = samples(metrics.read_text())
    assert got["reshard_job_success"] == 0
    assert got["reshard_exit_code"] == 2
    assert got["reshard_last_success_timestamp_seconds"] == last_success
    assert promtool_check(metrics).returncode == 0


def test_progress_steps_write_the_file_while_the_job_runs(tmp_path, reshard, source):
    """Rank 0 is killed after its second shard write: the file it left is
    the last progress step's, and says the job was running."""
    metrics = tmp_path / "reshard.prom"
    crashed = reshard(source, OLD, str(tmp_path / "dst" / "s_{i}.npz"), NEW,
                      extra=["--metrics-file", str(metrics), "--manifest-batch", "1"],
                      env={"RESHARD_FAULT": "after-shard-write:after=2"})
    assert crashed.returncode != 0
    got = samples(metrics.read_text())
    assert got["reshard_job_running"] == 1
    assert 0 < got["reshard_progress_ratio"] < 1
    assert promtool_check(metrics).returncode == 0
    assert not [p for p in os.listdir(tmp_path) if ".tmp." in p], "a temporary metrics file was left behind"


def test_bad_metrics_flags_are_refused_before_any_work(tmp_path, reshard, source):
    dst = tmp_path / "dst"
    run = reshard(source, OLD, str(dst / "s_{i}.npz"), NEW, extra=["--metrics-file", str(tmp_path / "no" / "m.prom")])
    assert run.returncode == 2
    assert f"--metrics-file {tmp_path / 'no' / 'm.prom'}: folder {tmp_path / 'no'} does not exist" in run.stderr
    run = reshard(source, OLD, str(dst / "s_{i}.npz"), NEW, extra=["--pushgateway", "localhost:9091"])
    assert run.returncode == 2 and "expected an http:// or https:// URL" in run.stderr
    assert not dst.exists()


def test_an_unreachable_gateway_is_a_warning_not_a_failure(tmp_path, reshard, source):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    run = reshard(source, OLD, str(tmp_path / "dst" / "s_{i}.npz"), NEW,
                  extra=["--pushgateway", f"http://127.0.0.1:{port}"])
    assert run.returncode == 0, run.stderr
    assert "mpi_reshard: warning: --pushgateway: pushing metrics to" in run.stderr
