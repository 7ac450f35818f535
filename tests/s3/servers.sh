#!/usr/bin/env bash
# Starts (start DIR) or stops (stop DIR) the test S3 server and its
# verifying front on 127.0.0.1. `start` prints the front's endpoint.
set -euo pipefail
cd "$(dirname "$0")"
cmd="$1"
dir="$2"
if [ "$cmd" = stop ]; then
  for f in "$dir"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  exit 0
fi
if [ ! -d node_modules/s3rver ] || [ ! -d node_modules/aws4 ]; then
  npm ci --no-audit --no-fund --silent >/dev/null 2>&1 || npm install --no-audit --no-fund --silent >/dev/null
fi
mkdir -p "$dir/data"
ports=$(/usr/bin/python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
read -r s3_port front_port <<<"$ports"
# s3rver opens every listed object's metadata at once: 1000+ keys need more
# file descriptors than the usual 1024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# --openssl-legacy-provider: s3rver 3.7.1 makes ListObjectsV2 continuation
# tokens with a cipher OpenSSL 3 only offers through the legacy provider.
node --openssl-legacy-provider node_modules/s3rver/bin/s3rver.js -d "$dir/data" -a 127.0.0.1 -p "$s3_port" --silent \
  --allow-mismatched-signatures --configure-bucket src --configure-bucket dst --configure-bucket other \
  >"$dir/s3rver.log" 2>&1 &
echo $! >"$dir/s3rver.pid"
node front.js "$front_port" "$s3_port" >"$dir/front.log" 2>&1 &
echo $! >"$dir/front.pid"
for _ in $(seq 1 100); do
  if curl -s -o /dev/null "http://127.0.0.1:$front_port/__front/stats" &&
     curl -s -o /dev/null "http://127.0.0.1:$s3_port/"; then
    echo "http://127.0.0.1:$front_port $s3_port"
    exit 0
  fi
  sleep 0.1
done
echo "servers.sh: the S3 servers did not start; see $dir/*.log" >&2
exit 1
