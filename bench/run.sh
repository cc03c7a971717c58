#!/usr/bin/env bash
# bench/run.sh (`make bench`): one 256 MiB artifact (half random, half
# compressible) deployed by `deploy-agent once` versus the shell pipeline it
# replaces (aws s3 cp + sha256sum -c + tar xzf + ln -s + mv -T), same s3rver,
# same disk, alternating runs. Prints the median ratio and the peak RSS of the
# supervisor and of each worker. Not a test: it never fails on speed.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SIZE_MIB=${SIZE_MIB:-256}
PORT=${PORT:-4590}
WORK=${BENCH_DIR:-/var/tmp/deploy-agent-bench}
AGENT=$PWD/build/deploy-agent
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=$WORK/aws-config
AWS="aws --endpoint-url http://127.0.0.1:$PORT"

[ -x node_modules/.bin/s3rver ] || npm ci --silent
rm -rf "$WORK" && mkdir -p "$WORK/s3" "$WORK/payload"
printf '[default]\ns3 =\n  multipart_threshold = 8GB\n' > "$AWS_CONFIG_FILE"

node --openssl-legacy-provider node_modules/.bin/s3rver -d "$WORK/s3" -a 127.0.0.1 -p "$PORT" \
        --configure-bucket bench --silent >"$WORK/s3rver.log" 2>&1 &
S3PID=$!
trap 'kill $S3PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done

half=$((SIZE_MIB / 2))
head -c "${half}M" /dev/urandom > "$WORK/payload/random.bin"
# (process substitution: under pipefail, yes's SIGPIPE would fail a pipe)
head -c "${half}M" < <(yes "deploy-agent bench line: compressible text that repeats, like logs and JS bundles") \
        > "$WORK/payload/text.txt"
SHA=$(printf bench | sha1sum | cut -c1-40)
tar -C "$WORK/payload" -czf "$WORK/$SHA.tar.gz" .
(cd "$WORK" && sha256sum "$SHA.tar.gz" > "$SHA.tar.gz.sha256")
$AWS s3 cp --quiet "$WORK/$SHA.tar.gz" "s3://bench/app/$SHA.tar.gz"
$AWS s3 cp --quiet "$WORK/$SHA.tar.gz.sha256" "s3://bench/app/$SHA.tar.gz.sha256"
echo "artifact: $(stat -c %s "$WORK/$SHA.tar.gz") bytes compressed, $SIZE_MIB MiB unpacked"

run_agent() {
        local d=$WORK/agent-$1
        rm -rf "$d" && mkdir -p "$d"
        cat > "$d/deploy.ini" <<INI
[agent]
state_dir = $d/state
worker_user = nobody
log_level = debug
[s3]
region = us-east-1
endpoint = http://127.0.0.1:$PORT
credentials = static
access_key_id = S3RVER
secret_access_key = S3RVER
[service "app"]
bucket = bench
prefix = app/
root = $d/srv
max_unpacked_size = 1G
INI
        local t0 t1
        t0=$(date +%s.%N)
        "$AGENT" -c "$d/deploy.ini" once 2>"$d/log"
        t1=$(date +%s.%N)
        echo "$t0 $t1" | awk '{printf "%.3f\n", $2 - $1}'
}

run_shell() {
        local d=$WORK/shell-$1
        rm -rf "$d" && mkdir -p "$d/dl" "$d/srv/releases/$SHA"
        local t0 t1
        t0=$(date +%s.%N)
        $AWS s3 cp --quiet "s3://bench/app/$SHA.tar.gz" "$d/dl/"
        $AWS s3 cp --quiet "s3://bench/app/$SHA.tar.gz.sha256" "$d/dl/"
        (cd "$d/dl" && sha256sum --quiet -c "$SHA.tar.gz.sha256")
        tar -C "$d/srv/releases/$SHA" -xzf "$d/dl/$SHA.tar.gz"
        ln -s "releases/$SHA" "$d/srv/current.tmp"
        mv -T "$d/srv/current.tmp" "$d/srv/current"
        t1=$(date +%s.%N)
        echo "$t0 $t1" | awk '{printf "%.3f\n", $2 - $1}'
}

: > "$WORK/times"
for i in $(seq "$RUNS"); do
        sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
        if [ $((i % 2)) -eq 1 ]; then
                a=$(run_agent "$i"); s=$(run_shell "$i")
        else
                s=$(run_shell "$i"); a=$(run_agent "$i")
        fi
        echo "run $i: deploy-agent ${a}s  shell ${s}s"
        echo "$a $s" >> "$WORK/times"
        cmp -s "$WORK/payload/random.bin" "$WORK/agent-$i/srv/current/random.bin" || { echo "agent release differs"; exit 1; }
done

python3 - "$WORK" "$RUNS" <<'PY'
import re, statistics, sys, pathlib
work, runs = pathlib.Path(sys.argv[1]), int(sys.argv[2])
rows = [tuple(map(float, l.split())) for l in (work / "times").read_text().split("\n") if l]
agent = [a for a, _ in rows]; shell = [s for _, s in rows]
ratios = [a / s for a, s in rows]
print(f"median deploy-agent {statistics.median(agent):.2f}s, shell {statistics.median(shell):.2f}s, "
      f"median ratio {statistics.median(ratios):.2f} (target <= 1.0)")
peak = {}
for i in range(1, runs + 1):
    log = (work / f"agent-{i}" / "log").read_text()
    for step, kib in re.findall(r"app: (\w+) worker: peak RSS (\d+) KiB", log):
        peak[step] = max(peak.get(step, 0), int(kib))
    for kib in re.findall(r"supervisor: peak RSS (\d+) KiB", log):
        peak["supervisor"] = max(peak.get("supervisor", 0), int(kib))
for k, v in peak.items():
    print(f"peak RSS {k}: {v / 1024:.1f} MiB")
PY
