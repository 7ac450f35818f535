"""Reshards through S3 (a real s3rver behind a front that verifies every
SigV4 signature with aws4 and injects faults), compared with local runs."""
import json
import os
import uuid

import pytest

from conftest import run_reshard
from sparse_reshard.testing import Scheme, skewed_matrix, write_sharded

OLD = "rows:block=100"
NEW = "cols:block=60"
SHAPE = (500, 240)


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """A local source and the local-to-local output every S3 run must match."""
    root = tmp_path_factory.mktemp("s3ref")
    src = str(root / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(*SHAPE, 60000, seed=31), Scheme.parse(OLD), src)
    run = run_reshard(src, OLD, str(root / "out" / "shard_{i}.npz"), NEW, ranks=2)
    assert run.returncode == 0, run.stderr
    outputs = {n: (root / "out" / n).read_bytes() for n in os.listdir(root / "out") if n.startswith("shard_")}
    return root, src, outputs


def upload_source(s3, local_src, prefix):
    """Puts the local source shards into s3://src/<prefix>/ with an identity reshard."""
    run = run_reshard(local_src, OLD, f"s3://src/{prefix}/shard_{{i}}.npz", OLD, ranks=1, env=s3.env())
    assert run.returncode == 0, run.stderr
    return f"s3://src/{prefix}/shard_{{i}}.npz"


def s3_outputs(s3, bucket, prefix):
    return {k: s3.object_bytes(bucket, f"{prefix}/{k}") for k in s3.keys(bucket, prefix) if k.startswith("shard_")}


def test_local_to_s3_to_s3_to_local(s3, local_reference, tmp_path):
    root, local_src, reference = local_reference
    prefix = uuid.uuid4().hex
    before = s3.stats()
    # local -> s3
    run = run_reshard(local_src, OLD, f"s3://dst/{prefix}/a/shard_{{i}}.npz", NEW, ranks=2, env=s3.env())
    assert run.returncode == 0, run.stderr
    assert s3_outputs(s3, "dst", f"{prefix}/a") == reference
    assert "_SUCCESS" in s3.keys("dst", f"{prefix}/a")
    # s3 -> s3
    src = upload_source(s3, local_src, prefix)
    run = run_reshard(src, OLD, f"s3://dst/{prefix}/b/shard_{{i}}.npz", NEW, ranks=3, env=s3.env())
    assert run.returncode == 0, run.stderr
    assert s3_outputs(s3, "dst", f"{prefix}/b") == reference
    # s3 -> local
    run = run_reshard(src, OLD, str(tmp_path / "back" / "shard_{i}.npz"), NEW, ranks=2, env=s3.env())
    assert run.returncode == 0, run.stderr
    got = {n: (tmp_path / "back" / n).read_bytes() for n in os.listdir(tmp_path / "back") if n.startswith("shard_")}
    assert got == reference
    after = s3.stats()
    assert after["verified"] > before["verified"] and after["rejected"] == before["rejected"]


@pytest.mark.parametrize("mode,match,count,every", [
    ("error500", "", 6, 4),
    ("slowdown", "", 4, 3),
    ("reset", "^GET /src", 3, 2),
    ("truncate", "^GET /src", 3, 2),
    ("slow", "^PUT", 2, 1),
    ("complete-error", "^POST /dst/.*uploadId=", 2, 1),
])
def test_faults_are_retried_and_output_is_identical(s3, local_reference, mode, match, count, every, tmp_path):
    root, local_src, reference = local_reference
    prefix = uuid.uuid4().hex
    src = upload_source(s3, local_src, prefix)
    # Small parts so destination shards go up as multipart uploads.
    env = s3.env(RESHARD_S3_MULTIPART_THRESHOLD="20000", RESHARD_S3_PART_SIZE_UNCHECKED="15000",
                 RESHARD_S3_READ_CHUNK="50000")
    injected_before = s3.stats()["injected"]
    s3.fault(mode, match=match, count=count, every=every)
    report = tmp_path / "report.json"
    try:
        run = run_reshard(src, OLD, f"s3://dst/{prefix}/out/shard_{{i}}.npz", NEW, ranks=2, env=env,
                          extra=["--report", str(report)])
    finally:
        s3.fault(None)
    assert run.returncode == 0, run.stderr
    assert s3.stats()["injected"] > injected_before, "no fault was injected"
    assert s3_outputs(s3, "dst", f"{prefix}/out") == reference
    if mode != "slow":
        assert json.loads(report.read_text())["totals"]["storage_retries"] >= 1


def test_unreachable_server_fails_with_exit_4_after_bounded_retries(local_reference, s3, tmp_path):
    root, local_src, _ = local_reference
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = s3.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", RESHARD_S3_MAX_ATTEMPTS="3")
    run = run_reshard(local_src, OLD, "s3://dst/nowhere/shard_{i}.npz", NEW, ranks=2, env=env)
    assert run.returncode == 4, run.stderr
    assert "after 3 attempts" in run.error_lines[0] and "s3://dst/nowhere/" in run.error_lines[0]
    run = run_reshard("s3://src/nowhere/shard_{i}.npz", OLD, str(tmp_path / "d" / "s_{i}.npz"), NEW, env=env)
    assert run.returncode == 4, run.stderr
    assert not (tmp_path / "d").exists()


def test_wrong_credentials_are_rejected_without_leaking_the_secret(s3, local_reference):
    root, local_src, _ = local_reference
    secret = "not-the-secret-" + uuid.uuid4().hex
    rejected_before = s3.stats()["rejected"]
    run = run_reshard(local_src, OLD, f"s3://dst/{uuid.uuid4().hex}/shard_{{i}}.npz", NEW,
                      env=s3.env(AWS_SECRET_ACCESS_KEY=secret))
    assert run.returncode == 4, run.stderr
    assert "403 SignatureDoesNotMatch" in run.error_lines[0]
    assert secret not in run.stderr and secret not in run.stdout
    assert s3.stats()["rejected"] > rejected_before


def test_crash_then_resume_on_s3(s3, local_reference):
    root, local_src, reference = local_reference
    prefix = uuid.uuid4().hex
    dst = f"s3://dst/{prefix}/shard_{{i}}.npz"
    crashed = run_reshard(local_src, OLD, dst, NEW, ranks=2, extra=["--manifest-batch", "1"],
                          env=s3.env(RESHARD_FAULT="before-report:rank=1:after=2"))
    assert crashed.returncode != 0 and "fault injected at before-report" in crashed.stderr
    assert "_SUCCESS" not in s3.keys("dst", prefix)
    rerun = run_reshard(local_src, OLD, dst, NEW, ranks=3, extra=["--manifest-batch", "1"], env=s3.env())
    assert rerun.returncode == 0, rerun.stderr
    assert s3_outputs(s3, "dst", prefix) == reference
    assert "_SUCCESS" in s3.keys("dst", prefix)
    verify = run_reshard  # noqa: F841  (verify runs below through the binary)
    import subprocess
    from conftest import MPI_ENV, binary
    out = subprocess.run([binary(), "verify", "--dst", dst], capture_output=True, text=True,
                         env=dict(os.environ, **MPI_ENV, **s3.env()))
    assert out.returncode == 0, out.stderr


def test_gcs_xml_api_through_the_same_server(s3, local_reference):
    root, local_src, reference = local_reference
    prefix = uuid.uuid4().hex
    env = {"STORAGE_EMULATOR_HOST": s3.endpoint, "GCS_HMAC_ACCESS_ID": "S3RVER", "GCS_HMAC_SECRET": "S3RVER"}
    run = run_reshard(local_src, OLD, f"gs://dst/{prefix}/shard_{{i}}.npz", NEW, ranks=2, env=env)
    assert run.returncode == 0, run.stderr
    assert s3_outputs(s3, "dst", prefix) == reference


def test_unchanged_shards_are_copied_by_the_server(s3, local_reference, tmp_path):
    root, local_src, _ = local_reference
    prefix = uuid.uuid4().hex
    # local -> s3 copies through the rank (two stores), s3 -> s3 with CopyObject.
    src = upload_source(s3, local_src, prefix)
    for i in range(5):
        with open(local_src.format(i=i), "rb") as f:
            assert s3.object_bytes("src", f"{prefix}/shard_{i}.npz") == f.read()
    report = tmp_path / "r.json"
    run = run_reshard(src, OLD, f"s3://dst/{prefix}/same/shard_{{i}}.npz", OLD, ranks=2, env=s3.env(),
                      extra=["--report", str(report)])
    assert run.returncode == 0, run.stderr
    totals = json.loads(report.read_text())["totals"]
    assert totals["destination_shards_reused"] == 5
    assert totals["shards_copied_server_side"] == 5
    assert totals["bytes_sent"] == 0
    for i in range(5):
        assert s3.object_bytes("dst", f"{prefix}/same/shard_{i}.npz") == s3.object_bytes("src", f"{prefix}/shard_{i}.npz")


def test_python_helpers_read_a_dataset_on_s3(s3, local_reference, monkeypatch):
    """is_published, read_report and load_matrix on s3:// patterns, through
    `mpi_reshard cat` and the same signed requests as the job."""
    import numpy as np

    from sparse_reshard import ReshardError, ShardingSpec, is_published, load_matrix, read_report
    from sparse_reshard.testing import read_sharded

    root, local_src, _ = local_reference
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    prefix = uuid.uuid4().hex
    dst = f"s3://dst/{prefix}/m/shard_{{i}}.npz"
    assert not is_published(dst), "nothing there yet"
    run = run_reshard(local_src, OLD, dst, NEW, ranks=2, env=s3.env())
    assert run.returncode == 0, run.stderr
    assert is_published(dst)
    rows, cols, data = read_sharded(local_src, Scheme.parse(OLD), SHAPE)
    report = read_report(dst)
    assert report["nnz"] == len(data) and report["shard_count"] == 4
    got = load_matrix(dst, ShardingSpec.from_cli(NEW))
    want = np.zeros(SHAPE)
    np.add.at(want, (rows, cols), data)
    assert got.shape == SHAPE and got.nnz == len(data) and np.array_equal(got.toarray(), want)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(ReshardError) as failure:
        is_published(dst)
    assert failure.value.exit_code == 4 and "_SUCCESS" in failure.value.message


def test_plan_reads_index_arrays_through_s3(s3, local_reference):
    """`mpi_reshard plan` on an s3:// source gives the local figures, from
    signed ranged reads of the index arrays only."""
    from sparse_reshard import plan

    _, local_src, _ = local_reference
    src = upload_source(s3, local_src, uuid.uuid4().hex)
    before = s3.stats()
    local = plan(local_src, OLD, NEW, balance="nnz")
    # One process fetches several sources at once; two ranks share them.
    for num_ranks in (1, 2):
        remote = plan(src, OLD, NEW, balance="nnz", num_ranks=num_ranks, ranks=1, env=s3.env())
        assert remote.entries == local.entries
        assert remote.proposal.scheme == local.proposal.scheme
        assert remote.fraction_changing_shard == local.fraction_changing_shard
    source_bytes = sum(os.path.getsize(os.path.join(os.path.dirname(local_src), n))
                       for n in os.listdir(os.path.dirname(local_src)))
    read = remote.raw["source"]["bytes_read_by_plan"]
    assert 0 < read < source_bytes / 2, (read, source_bytes)
    after = s3.stats()
    assert after["verified"] > before["verified"] and after["rejected"] == before["rejected"]


def test_aws_profiles_credential_process_and_where_it_looked(s3, local_reference, tmp_path):
    """The SDKs' shared files, through the signature-verifying front: the
    profile AWS_PROFILE names, its region and endpoint_url, a
    credential_process, and one-line errors that never show a secret."""
    _, local_src, reference = local_reference
    aws = tmp_path / "aws"
    aws.mkdir()
    (aws / "credentials").write_text("[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONGSECRET\n"
                                     "[other]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n")
    (aws / "config").write_text(
        f"[profile other]\nregion = us-east-1\nendpoint_url = {s3.endpoint}\n"
        "[profile proc]\nregion = us-east-1\nendpoint_url = " + s3.endpoint + "\n"
        "credential_process = printf '{\"Version\": 1, \"AccessKeyId\": \"S3RVER\", \"SecretAccessKey\": \"S3RVER\"}'\n")
    base = {k: v for k, v in s3.env().items() if not k.startswith(("AWS_ACCESS", "AWS_SECRET", "AWS_ENDPOINT"))}
    base.update(HOME=str(tmp_path), AWS_SHARED_CREDENTIALS_FILE=str(aws / "credentials"),
                AWS_CONFIG_FILE=str(aws / "config"))
    for profile in ("other", "proc"):
        prefix = uuid.uuid4().hex
        run = run_reshard(local_src, OLD, f"s3://dst/{prefix}/shard_{{i}}.npz", NEW, ranks=2,
                          env=dict(base, AWS_PROFILE=profile))
        assert run.returncode == 0, (profile, run.stderr)
        assert s3_outputs(s3, "dst", prefix) == reference
    # The default profile's keys are wrong: the front refuses them (exit 4).
    wrong = run_reshard(local_src, OLD, f"s3://dst/{uuid.uuid4().hex}/shard_{{i}}.npz", NEW, ranks=1,
                        env=dict(base, AWS_ENDPOINT_URL=s3.endpoint))
    assert wrong.returncode == 4, wrong.stderr
    assert "WRONGSECRET" not in wrong.stderr
    # A malformed file is a one-line error naming the file and line.
    (aws / "credentials").write_text("[default]\naws_access_key_id WRONG\n")
    bad = run_reshard(local_src, OLD, f"s3://dst/{uuid.uuid4().hex}/shard_{{i}}.npz", NEW, ranks=1, env=base)
    assert bad.returncode == 2
    assert len(bad.error_lines) == 1, bad.stderr
    assert bad.error_lines[0].endswith(f"s3:// credentials: {aws / 'credentials'} line 2: "
                                       "expected [section] or key = value"), bad.stderr
    # Nothing anywhere: exit 4, naming every link tried.
    (aws / "credentials").unlink()
    (aws / "config").unlink()
    none = run_reshard(local_src, OLD, f"s3://dst/{uuid.uuid4().hex}/shard_{{i}}.npz", NEW, ranks=1,
                       env=dict(base, AWS_ENDPOINT_URL=s3.endpoint, AWS_EC2_METADATA_DISABLED="true"))
    assert none.returncode == 4, none.stderr
    assert ("s3:// found no credentials; tried environment (AWS_ACCESS_KEY_ID not set); "
            f"config file {aws / 'config'} (not found); shared credentials file {aws / 'credentials'} (not found); "
            "instance metadata (AWS_EC2_METADATA_DISABLED is true)") in none.stderr, none.stderr


def test_the_bucket_region_is_learnt_from_a_redirect(s3, local_reference):
    """The front plays a bucket in eu-central-1 and answers requests signed
    for us-east-1 with 301 and x-amz-bucket-region, as S3 does: the job
    signs for the bucket's region from then on instead of failing."""
    _, local_src, reference = local_reference
    before = s3.stats()
    s3.control("/__front/region", b'{"region": "eu-central-1"}')
    try:
        prefix = uuid.uuid4().hex
        run = run_reshard(local_src, OLD, f"s3://dst/{prefix}/shard_{{i}}.npz", NEW, ranks=2,
                          env=s3.env(AWS_REGION="us-east-1"))
    finally:
        s3.control("/__front/region", b'{"region": null}')
    assert run.returncode == 0, run.stderr
    assert s3_outputs(s3, "dst", prefix) == reference
    after = s3.stats()
    # Each rank learns it once (a few requests may be in flight at the time).
    assert 2 <= after["regionRedirects"] - before["regionRedirects"] <= 2 * 32
    assert after["rejected"] == before["rejected"]
