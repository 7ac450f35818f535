"""Temporary S3 credentials from the links of the AWS chain that fetch them:
a fake IMDSv2 and a fake container-credentials endpoint on 127.0.0.1 issue
credentials that expire within seconds, register them with the
signature-verifying front (which refuses them once expired or without their
session token), and a job that outlives them keeps working by refreshing."""
import http.server
import json
import secrets
import threading
import time
import uuid

import pytest

from conftest import read_report, run_reshard, sharded_source

OLD, NEW = "rows:block=100", "cols:block=60"
LIFETIME_S = 3


class CredentialIssuer:
    """Issues short-lived credentials and registers each with the front."""

    def __init__(self, s3):
        self.s3 = s3
        self.issued = 0
        self.lock = threading.Lock()

    def issue(self):
        with self.lock:
            self.issued += 1
            key = f"ASIATEST{self.issued:08d}"
        secret, token = secrets.token_hex(20), secrets.token_hex(32)
        expires = int(time.time()) + LIFETIME_S
        self.s3.control("/__front/credentials", json.dumps(
            {"accessKeyId": key, "secretAccessKey": secret, "sessionToken": token, "expiresAt": expires}).encode())
        return {"Code": "Success", "AccessKeyId": key, "SecretAccessKey": secret, "Token": token,
                "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))}


def serve(handler_class):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def imds(s3):
    """IMDSv2: PUT /latest/api/token first; every GET without that token is 401."""
    issuer = CredentialIssuer(s3)
    tokens = set()
    refused = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, body=b""):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self):
            if self.path != "/latest/api/token" or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
                return self.reply(400)
            token = secrets.token_hex(16)
            tokens.add(token)
            self.reply(200, token.encode())

        def do_GET(self):
            if self.headers.get("X-aws-ec2-metadata-token") not in tokens:
                refused.append(self.path)
                return self.reply(401)
            if self.path == "/latest/meta-data/iam/security-credentials/":
                return self.reply(200, b"reshard-role")
            if self.path == "/latest/meta-data/iam/security-credentials/reshard-role":
                return self.reply(200, json.dumps(issuer.issue()).encode())
            self.reply(404)

    server = serve(Handler)
    yield f"http://127.0.0.1:{server.server_address[1]}", issuer, refused
    server.shutdown()


@pytest.fixture
def container_endpoint(s3):
    """ECS/EKS container credentials: the Authorization header must match."""
    issuer = CredentialIssuer(s3)
    refused = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.headers.get("Authorization") != "container-secret-token" or self.path != "/v2/credentials/abc":
                refused.append(self.path)
                self.send_response(403)
                self.end_headers()
                return
            body = json.dumps(issuer.issue()).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = serve(Handler)
    yield f"http://127.0.0.1:{server.server_address[1]}/v2/credentials/abc", issuer, refused
    server.shutdown()


@pytest.fixture
def sts(s3, tmp_path):
    """STS AssumeRoleWithWebIdentity: the token must be one STS issued and
    the token file's contents at the time of the call (Kubernetes rotates it)."""
    import urllib.parse

    issuer = CredentialIssuer(s3)
    token_file = tmp_path / "web-identity-token"
    token_file.write_text("eyJ-first-token\n")
    refused = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            ok = (form.get("Action") == ["AssumeRoleWithWebIdentity"]
                  and form.get("RoleArn") == ["arn:aws:iam::123456789012:role/reshard"]
                  and form.get("WebIdentityToken") == [token_file.read_text().strip()]
                  and form["WebIdentityToken"][0] in ("eyJ-first-token", "eyJ-second-token"))
            if not ok:
                refused.append(form)
                body = (b"<ErrorResponse><Error><Code>InvalidIdentityToken</Code></Error></ErrorResponse>")
                self.send_response(400)
            else:
                c = issuer.issue()
                body = ("<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
                        f"<AccessKeyId>{c['AccessKeyId']}</AccessKeyId><SecretAccessKey>{c['SecretAccessKey']}"
                        f"</SecretAccessKey><SessionToken>{c['Token']}</SessionToken><Expiration>{c['Expiration']}"
                        "</Expiration></Credentials></AssumeRoleWithWebIdentityResult>"
                        "</AssumeRoleWithWebIdentityResponse>").encode()
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = serve(Handler)
    yield f"http://127.0.0.1:{server.server_address[1]}", token_file, issuer, refused
    server.shutdown()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return sharded_source(tmp_path_factory.mktemp("creds"), OLD, (500, 240), 60000, seed=31)


def no_static_credentials(s3, tmp_path, **extra):
    env = {k: v for k, v in s3.env().items() if not k.startswith(("AWS_ACCESS", "AWS_SECRET"))}
    env.update(HOME=str(tmp_path), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_CONFIG_FILE=str(tmp_path / "none"), **extra)
    return env


def slow_long_job(s3, source, tmp_path, env):
    """A 2-rank job slowed past two credential lifetimes: every write's reply
    is held 1.5 s by the front, and each rank writes one request at a time."""
    prefix = uuid.uuid4().hex
    before = s3.stats()
    s3.fault("slow", match="^PUT", count=6, every=1)
    started = time.time()
    run = run_reshard(source, OLD, f"s3://dst/{prefix}/shard_{{i}}.npz", NEW, ranks=2, env=env,
                      extra=["--max-concurrency", "1", "--report", str(tmp_path / "report.json")])
    elapsed = time.time() - started
    s3.fault(None)
    assert run.returncode == 0, run.stderr
    after = s3.stats()
    report = read_report(tmp_path / "report.json")
    return run, report, elapsed, before, after


def test_imdsv2_credentials_are_refreshed_before_they_expire(s3, source, tmp_path, imds):
    endpoint, issuer, refused = imds
    env = no_static_credentials(s3, tmp_path, AWS_EC2_METADATA_SERVICE_ENDPOINT=endpoint)
    run, report, elapsed, before, after = slow_long_job(s3, source, tmp_path, env)
    refreshes = report["totals"]["credential_refreshes"]
    print(f"IMDSv2: job {elapsed:.1f} s with {LIFETIME_S} s credentials: {issuer.issued} issued, "
          f"{refreshes} refreshes in the report, {after['temporaryVerified'] - before['temporaryVerified']} "
          "requests verified with them")
    assert elapsed > 2 * LIFETIME_S, "the job must outlive the credentials it started with"
    assert refreshes >= 1 and issuer.issued >= 3  # one per rank at start, then refreshes
    assert after["rejected"] == before["rejected"], "a request was signed with expired or wrong credentials"
    assert after["temporaryVerified"] > before["temporaryVerified"]
    assert refused == [], "a metadata request came without the session token"


def test_container_credentials_with_the_authorization_token(s3, source, tmp_path, container_endpoint):
    url, issuer, refused = container_endpoint
    env = no_static_credentials(s3, tmp_path, AWS_CONTAINER_CREDENTIALS_FULL_URI=url,
                                AWS_CONTAINER_AUTHORIZATION_TOKEN="container-secret-token",
                                AWS_EC2_METADATA_DISABLED="true")
    run, report, elapsed, before, after = slow_long_job(s3, source, tmp_path, env)
    assert report["totals"]["credential_refreshes"] >= 1, (elapsed, issuer.issued)
    assert after["rejected"] == before["rejected"]
    assert refused == []


def test_a_failing_chain_names_each_link_and_no_secret(s3, source, tmp_path, container_endpoint):
    url, _, refused = container_endpoint
    env = no_static_credentials(s3, tmp_path, AWS_CONTAINER_CREDENTIALS_FULL_URI=url,
                                AWS_CONTAINER_AUTHORIZATION_TOKEN="wrong-token", AWS_EC2_METADATA_DISABLED="true")
    run = run_reshard(source, OLD, f"s3://dst/{uuid.uuid4().hex}/shard_{{i}}.npz", NEW, ranks=1, env=env)
    assert run.returncode == 4, run.stderr
    line = run.error_lines[0]
    assert "s3:// found no credentials; tried environment (AWS_ACCESS_KEY_ID not set)" in line
    assert f"container credentials (GET {url}: HTTP 403)" in line
    assert "instance metadata (AWS_EC2_METADATA_DISABLED is true)" in line
    assert "wrong-token" not in run.stderr
    assert refused, "the container endpoint was asked"


def test_web_identity_through_sts_with_a_rotated_token(s3, source, tmp_path, sts):
    endpoint, token_file, issuer, refused = sts
    env = no_static_credentials(s3, tmp_path, AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file),
                                AWS_ROLE_ARN="arn:aws:iam::123456789012:role/reshard", AWS_ENDPOINT_URL_STS=endpoint,
                                AWS_EC2_METADATA_DISABLED="true")

    def rotate():  # mid-job, as Kubernetes does: refreshes must read the new token
        time.sleep(2.5)
        token_file.write_text("eyJ-second-token\n")

    rotation = threading.Thread(target=rotate)
    rotation.start()
    run, report, elapsed, before, after = slow_long_job(s3, source, tmp_path, env)
    rotation.join()
    print(f"web identity: job {elapsed:.1f} s, {issuer.issued} credentials issued, "
          f"{report['totals']['credential_refreshes']} refreshes")
    assert report["totals"]["credential_refreshes"] >= 1
    assert after["rejected"] == before["rejected"]
    assert refused == [], "STS was called with a stale or wrong token"
    refused.clear()
    # A token STS refuses: exit 4 naming web identity and STS's error code.
    token_file.write_text("not-the-token")
    sts_refused = run_reshard(source, OLD, f"s3://dst/{uuid.uuid4().hex}/shard_{{i}}.npz", NEW, ranks=1,
                              env=dict(env, AWS_ENDPOINT_URL_STS=endpoint))
    assert sts_refused.returncode == 4
    assert f"web identity (web identity: POST {endpoint}/: HTTP 400 InvalidIdentityToken)" in sts_refused.stderr
    assert "not-the-token" not in sts_refused.stderr
    assert refused, "STS saw the refused token"
