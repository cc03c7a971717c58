#!/usr/bin/env bash
# make demo: deploy-agent end to end on one machine (Debian 12, as root).
# Installs what it needs, builds, starts s3rver on loopback behind the
# SigV4-verifying proxy the tests use, publishes two builds of a tiny sample
# service with awscli as CI would, and runs `deploy-agent once` twice: the
# first deploy, then the upgrade, showing where `current` points each time.
# Everything lives in a temp dir and s3rver is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

if [ -t 1 ]; then B=$'\033[1m'; N=$'\033[0m'; else B=; N=; fi
say() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }

say "Installing dependencies (scripts/deps.sh)"
bash scripts/deps.sh

say "Building (make)"
make -s >/dev/null
AGENT=$REPO/build/deploy-agent
echo "$AGENT --version: $("$AGENT" --version)"

DEMO=$(mktemp -d /tmp/deploy-agent-demo.XXXXXX)
chmod 0755 "$DEMO"
S3_PID=
PROXY_PID=
cleanup() {
        [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null || true
        [ -n "$S3_PID" ] && kill "$S3_PID" 2>/dev/null || true
        wait 2>/dev/null || true
        if [ -z "${KEEP_DEMO:-}" ]; then rm -rf "$DEMO"; else echo "demo files kept in $DEMO"; fi
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "Starting s3rver on loopback, behind the SigV4-verifying proxy"
S3_PORT=$(free_port)
mkdir -p "$DEMO/s3"
# --openssl-legacy-provider: s3rver's listing tokens need DES (OpenSSL 3 legacy).
node --openssl-legacy-provider node_modules/.bin/s3rver -d "$DEMO/s3" -a 127.0.0.1 -p "$S3_PORT" \
        --configure-bucket artifacts >"$DEMO/s3rver.log" 2>&1 &
S3_PID=$!
/usr/bin/python3 tests/integration/sigv4_proxy.py --upstream "127.0.0.1:$S3_PORT" \
        --port-file "$DEMO/proxy.port" >"$DEMO/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 100); do
        [ -s "$DEMO/proxy.port" ] && curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && break
        sleep 0.1
done
PROXY_PORT=$(cat "$DEMO/proxy.port")
ENDPOINT=http://127.0.0.1:$PROXY_PORT
echo "s3rver on 127.0.0.1:$S3_PORT, proxy (checks every signature) on $ENDPOINT, bucket 'artifacts'"

export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=$DEMO/aws-config AWS_SHARED_CREDENTIALS_FILE=$DEMO/no-credentials
export AWS_EC2_METADATA_DISABLED=true AWS_PAGER=
printf '[default]\ns3 =\n  addressing_style = path\n' >"$AWS_CONFIG_FILE"
aws() { /usr/bin/aws --endpoint-url "$ENDPOINT" "$@"; }

# What CI does for each commit: tar the build, name it by the commit's SHA,
# upload it with its sha256 sidecar.
publish() {
        local version=$1 sha src
        sha=$(printf 'hello-service %s' "$version" | sha1sum | cut -c1-40)
        src=$DEMO/build-$version
        mkdir -p "$src/bin"
        echo "$version" >"$src/VERSION"
        mkdir -p "$src/static"
        echo "<h1>hello-service $version</h1>" >"$src/static/index.html"
        cat >"$src/bin/hello-service" <<'SH'
#!/bin/sh
# A tiny HTTP service: serves its release's static/ on $PORT (default 8080).
exec python3 -m http.server --bind 127.0.0.1 --directory "$(dirname "$0")/../static" "${PORT:-8080}"
SH
        chmod 0755 "$src/bin/hello-service"
        tar -C "$src" -czf "$DEMO/$sha.tar.gz" .
        (cd "$DEMO" && sha256sum "$sha.tar.gz" >"$sha.tar.gz.sha256")
        aws s3 cp --only-show-errors "$DEMO/$sha.tar.gz.sha256" "s3://artifacts/hello/$sha.tar.gz.sha256"
        aws s3 cp --only-show-errors "$DEMO/$sha.tar.gz" "s3://artifacts/hello/$sha.tar.gz"
        echo "published version $version as s3://artifacts/hello/$sha.tar.gz (+ .sha256)"
}

cat >"$DEMO/deploy.ini" <<INI
[agent]
state_dir   = $DEMO/state
socket      = $DEMO/control.sock
worker_user = nobody
log_level   = info

[s3]
region            = us-east-1
endpoint          = $ENDPOINT
addressing        = path
credentials       = static
access_key_id     = S3RVER
secret_access_key = S3RVER

[service "hello"]
bucket        = artifacts
prefix        = hello/
suffix        = .tar.gz
root          = $DEMO/srv/hello
keep_releases = 3
INI

deploy() {
        echo "\$ deploy-agent -c $DEMO/deploy.ini once"
        "$AGENT" -c "$DEMO/deploy.ini" once 2>&1 | sed 's/^/    /'
        local link
        link=$(readlink "$DEMO/srv/hello/current" || echo "(none)")
        echo "${B}current -> $link${N}   (VERSION: $(cat "$DEMO/srv/hello/current/VERSION" 2>/dev/null || echo -))"
}

say "Checking the demo config"
"$AGENT" -c "$DEMO/deploy.ini" check-config

say "CI publishes version 1.0"
publish 1.0
say "First deploy"
deploy

sleep 1 # S3 timestamps have 1 s resolution: 2.0 must be strictly newer
say "CI publishes version 2.0"
publish 2.0
say "Upgrade"
deploy

say "Running it again: already current, nothing to do"
deploy

say "On disk"
ls -l "$DEMO/srv/hello" "$DEMO/srv/hello/releases" | sed 's/^/    /'
echo
echo "Done. (KEEP_DEMO=1 make demo keeps $DEMO)"
