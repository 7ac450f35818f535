"""Temporary cloud credentials from the links of the AWS and Google chains
that fetch them. Fakes on 127.0.0.1 (IMDSv2, container credentials, STS, a
Google OAuth token endpoint that verifies the service account's RS256 JWT,
a GCE metadata server) check what they receive, issue credentials or tokens
that expire within seconds and register them with the verifying front,
which refuses them once expired; a job that outlives them keeps working by
refreshing."""
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

    def next_number(self):
        with self.lock:
            self.issued += 1
            return self.issued

    def issue(self):
        key = f"ASIATEST{self.next_number():08d}"
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
    env.update({"HOME": str(tmp_path), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                "AWS_CONFIG_FILE": str(tmp_path / "none"), **extra})
    return env


def slow_long_job(s3, source, tmp_path, env, scheme="s3"):
    """A 2-rank job slowed past two credential lifetimes: every write's reply
    is held 1.5 s by the front, and each rank writes one request at a time."""
    prefix = uuid.uuid4().hex
    before = s3.stats()
    s3.fault("slow", match="^PUT", count=6, every=1)
    started = time.time()
    run = run_reshard(source, OLD, f"{scheme}://dst/{prefix}/shard_{{i}}.npz", NEW, ranks=2, env=env,
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


def test_credential_process_with_an_expiration_is_run_again(s3, source, tmp_path):
    """A profile's credential_process that prints an Expiration: each rank
    runs it again before the credentials lapse (the process registers what
    it prints with the front, as a real issuer's backend would know them)."""
    runs = tmp_path / "runs"
    script = tmp_path / "issue.py"
    script.write_text(f"""import json, secrets, time, urllib.request
key, secret, token = "ASIAPROC" + secrets.token_hex(6).upper(), secrets.token_hex(20), secrets.token_hex(32)
expires = int(time.time()) + {LIFETIME_S}
urllib.request.urlopen(urllib.request.Request("{s3.endpoint}/__front/credentials", method="POST", data=json.dumps(
    {{"accessKeyId": key, "secretAccessKey": secret, "sessionToken": token, "expiresAt": expires}}).encode())).read()
with open("{runs}", "a") as f:
    f.write(key + "\\n")
print(json.dumps({{"Version": 1, "AccessKeyId": key, "SecretAccessKey": secret, "SessionToken": token,
                  "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))}}))
""")
    config = tmp_path / "config"
    config.write_text(f"[profile issuer]\ncredential_process = /usr/bin/python3 {script}\n")
    env = no_static_credentials(s3, tmp_path, AWS_CONFIG_FILE=str(config), AWS_PROFILE="issuer",
                                AWS_EC2_METADATA_DISABLED="true")
    run, report, elapsed, before, after = slow_long_job(s3, source, tmp_path, env)
    issued = runs.read_text().split()
    print(f"credential_process: job {elapsed:.1f} s, run {len(issued)} times, "
          f"{report['totals']['credential_refreshes']} refreshes")
    assert report["totals"]["credential_refreshes"] >= 1 and len(issued) >= 3
    assert after["rejected"] == before["rejected"]
    assert after["temporaryVerified"] > before["temporaryVerified"]


# ---- Google Cloud: google-auth's chain against a fake token endpoint and metadata server

STORAGE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"


class TokenIssuer(CredentialIssuer):
    """Issues short-lived access tokens and registers each with the front."""

    def issue(self):
        token = f"ya29.test-{self.next_number()}-{secrets.token_hex(8)}"
        self.s3.control("/__front/bearer", json.dumps(
            {"token": token, "expiresAt": int(time.time()) + LIFETIME_S}).encode())
        return {"access_token": token, "expires_in": LIFETIME_S, "token_type": "Bearer"}


def rsa_key_pem():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return key, pem


def b64url_decode(text):
    import base64
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def google_token_endpoint(s3):
    """POST /token as oauth2.googleapis.com does it: a jwt-bearer grant whose
    assertion must verify (RS256) with the service account's public key and
    carry the expected claims, or a refresh_token grant with the right client."""
    import urllib.parse

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    issuer = TokenIssuer(s3)
    key, pem = rsa_key_pem()
    state = {"url": None, "refused": [], "grants": []}
    account = "reshard@test-project.iam.gserviceaccount.com"

    def jwt_problem(assertion):
        header_b64, claims_b64, signature_b64 = assertion.split(".")
        try:
            key.public_key().verify(b64url_decode(signature_b64), f"{header_b64}.{claims_b64}".encode(),
                                    padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "signature"
        header, claims = json.loads(b64url_decode(header_b64)), json.loads(b64url_decode(claims_b64))
        if header != {"alg": "RS256", "typ": "JWT", "kid": "key-1"}:
            return f"header {header}"
        if claims["iss"] != account or claims["aud"] != state["url"] or claims["scope"] != STORAGE_SCOPE:
            return f"claims {claims}"
        if not (0 < claims["exp"] - claims["iat"] <= 3600 and abs(claims["iat"] - time.time()) < 60):
            return f"times {claims}"
        return None

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            form = {k: v[0] for k, v in urllib.parse.parse_qs(
                self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
            grant = form.get("grant_type")
            state["grants"].append(grant)
            if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
                problem = jwt_problem(form.get("assertion", ".."))
            elif grant == "refresh_token":
                problem = None if (form.get("client_id"), form.get("client_secret"), form.get("refresh_token")) == (
                    "client-1", "client-secret-1", "refresh-1") else "refresh token"
            else:
                problem = f"grant {grant}"
            if problem:
                state["refused"].append(problem)
                status, body = 400, {"error": "invalid_grant", "error_description": problem}
            else:
                status, body = 200, issuer.issue()
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = serve(Handler)
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/token"
    service_account = {"type": "service_account", "project_id": "test-project", "private_key_id": "key-1",
                       "private_key": pem, "client_email": account, "client_id": "1",
                       "token_uri": state["url"]}
    yield state, issuer, service_account
    server.shutdown()


@pytest.fixture
def gce_metadata(s3):
    """The metadata server: only requests with Metadata-Flavor: Google, and
    every answer carries it back."""
    issuer = TokenIssuer(s3)
    refused = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            path_ok = self.path == "/computeMetadata/v1/instance/service-accounts/default/token"
            if self.headers.get("Metadata-Flavor") != "Google" or not path_ok:
                refused.append(self.path)
                status, data = 403, b"{}"
            else:
                status, data = 200, json.dumps(issuer.issue()).encode()
            self.send_response(status)
            self.send_header("Metadata-Flavor", "Google")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = serve(Handler)
    yield f"127.0.0.1:{server.server_address[1]}", issuer, refused
    server.shutdown()


def gcs_env(s3, tmp_path, **extra):
    """gs:// through the same front (the XML API), with no explicit choice
    (HMAC keys, a fixed token): google-auth's chain decides."""
    env = {k: v for k, v in s3.env().items() if not k.startswith(("AWS_ACCESS", "AWS_SECRET"))}
    env.update(STORAGE_EMULATOR_HOST=s3.endpoint, HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
               GCS_HMAC_ACCESS_ID="", GCS_HMAC_SECRET="", GOOGLE_OAUTH_ACCESS_TOKEN="", **extra)
    return env


def test_gcs_service_account_jwt_is_verified_and_tokens_refreshed(s3, source, tmp_path, google_token_endpoint):
    state, issuer, service_account = google_token_endpoint
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(service_account))
    env = gcs_env(s3, tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key_file), NO_GCE_CHECK="true")
    run, report, elapsed, before, after = slow_long_job(s3, source, tmp_path, env, scheme="gs")
    refreshes = report["totals"]["credential_refreshes"]
    print(f"GCS service account: job {elapsed:.1f} s with {LIFETIME_S} s tokens: {issuer.issued} issued, "
          f"{refreshes} refreshes, {after['bearerVerified'] - before['bearerVerified']} requests with them")
    assert elapsed > 2 * LIFETIME_S
    assert state["refused"] == [], "a JWT failed verification"
    assert refreshes >= 1 and issuer.issued >= 3
    assert after["rejected"] == before["rejected"], "a request carried an expired or unknown token"
    assert after["bearerVerified"] > before["bearerVerified"]
    assert report["totals"]["destination_shards_written"] > 0


def test_gcs_key_the_endpoint_does_not_know_is_exit_4_without_secrets(s3, source, tmp_path, google_token_endpoint):
    state, _, service_account = google_token_endpoint
    _, other_pem = rsa_key_pem()
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(dict(service_account, private_key=other_pem)))
    env = gcs_env(s3, tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key_file), NO_GCE_CHECK="true")
    run = run_reshard(source, OLD, f"gs://dst/{uuid.uuid4().hex}/shard_{{i}}.npz", NEW, ranks=1, env=env)
    assert run.returncode == 4, run.stderr
    assert (f"gs:// credentials: service account {service_account['client_email']}: POST {state['url']}: "
            "HTTP 400 invalid_grant") in run.error_lines[0]
    assert "PRIVATE KEY" not in run.stderr and state["refused"] == ["signature"]


def test_gcs_authorized_user_from_the_gcloud_file(s3, source, tmp_path, google_token_endpoint):
    state, issuer, _ = google_token_endpoint
    (tmp_path / "gcloud").mkdir()
    (tmp_path / "gcloud" / "application_default_credentials.json").write_text(json.dumps(
        {"type": "authorized_user", "client_id": "client-1", "client_secret": "client-secret-1",
         "refresh_token": "refresh-1", "token_uri": state["url"]}))
    before = s3.stats()
    run = run_reshard(source, OLD, f"gs://dst/{uuid.uuid4().hex}/shard_{{i}}.npz", NEW, ranks=2,
                      env=gcs_env(s3, tmp_path, NO_GCE_CHECK="true"))
    assert run.returncode == 0, run.stderr
    assert state["refused"] == [] and state["grants"].count("refresh_token") >= 2  # one per rank
    assert s3.stats()["bearerVerified"] > before["bearerVerified"]


def test_gcs_metadata_server_tokens_are_refreshed(s3, source, tmp_path, gce_metadata):
    host, issuer, refused = gce_metadata
    env = gcs_env(s3, tmp_path, GCE_METADATA_HOST=host)
    run, report, elapsed, before, after = slow_long_job(s3, source, tmp_path, env, scheme="gs")
    assert report["totals"]["credential_refreshes"] >= 1, (elapsed, issuer.issued)
    assert after["rejected"] == before["rejected"]
    assert refused == [], "a metadata request came without Metadata-Flavor: Google"


def test_gcs_failing_chain_names_each_link(s3, source, tmp_path):
    env = gcs_env(s3, tmp_path, GCE_METADATA_HOST="127.0.0.1:1")
    run = run_reshard(source, OLD, f"gs://dst/{uuid.uuid4().hex}/shard_{{i}}.npz", NEW, ranks=1, env=env)
    assert run.returncode == 4, run.stderr
    line = run.error_lines[0]
    assert ("gs:// found no credentials; tried GCS_HMAC_ACCESS_ID and GCS_HMAC_SECRET (not set); "
            "GOOGLE_OAUTH_ACCESS_TOKEN (not set); GOOGLE_APPLICATION_CREDENTIALS (not set); "
            f"gcloud application-default credentials {tmp_path}/gcloud/application_default_credentials.json "
            "(not found); metadata server (GET http://127.0.0.1:1/computeMetadata/v1/") in line, line
