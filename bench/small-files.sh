#!/usr/bin/env bash
# bench/small-files.sh (`make bench`): one artifact shaped like node_modules
# (FILES small files, about 100 MiB unpacked, part random, part text) deployed
# by `deploy-agent once`, against the floor: `tar xzf` of the same archive
# followed by one `sync`. With OLD_AGENT=/path/to/deploy-agent (a build of
# another commit, its deploy-agent-worker beside it) that binary is timed too,
# alternating with this one. The page cache is dropped before every run.
# Prints each median and agent/floor. Not a test: it never fails on speed.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
FILES=${FILES:-12000}
PORT=${PORT:-4591}
WORK=${BENCH_DIR:-/var/tmp/deploy-agent-bench-small}
AGENT=${AGENT:-$PWD/build/deploy-agent}
OLD_AGENT=${OLD_AGENT:-}

[ -x node_modules/.bin/s3rver ] || npm ci --silent
rm -rf "$WORK" && mkdir -p "$WORK/s3" "$WORK/payload"
node --openssl-legacy-provider node_modules/.bin/s3rver -d "$WORK/s3" -a 127.0.0.1 -p "$PORT" \
        --configure-bucket bench --silent >"$WORK/s3rver.log" 2>&1 &
S3PID=$!
trap 'kill $S3PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done

SHA=$(printf small-files | sha1sum | cut -c1-40)
python3 - "$WORK/payload" "$FILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(12000)
text = b"module.exports = function (a, b) { return a + b; }; // repeats like JS\n" * 300
for i in range(n):
    d = os.path.join(root, f"pkg{i // 100:03d}", "lib")
    os.makedirs(d, exist_ok=True)
    size = rng.randint(1024, 16 * 1024)
    rnd = size // 4
    with open(os.path.join(d, f"f{i:05d}.js"), "wb") as f:
        f.write(rng.randbytes(rnd) + text[: size - rnd])
PY
tar -C "$WORK/payload" -czf "$WORK/$SHA.tar.gz" .
(cd "$WORK" && sha256sum "$SHA.tar.gz" > "$SHA.tar.gz.sha256")
for f in "$SHA.tar.gz" "$SHA.tar.gz.sha256"; do
        curl -sf -X PUT --data-binary "@$WORK/$f" "http://127.0.0.1:$PORT/bench/app/$f" >/dev/null
done
echo "artifact: $FILES files, $(du -sm --apparent-size "$WORK/payload" | cut -f1) MiB unpacked," \
        "$(($(stat -c %s "$WORK/$SHA.tar.gz") / 1048576)) MiB gzip"

elapsed() {     # command...: prints its wall time in seconds
        local t0 t1
        t0=$(date +%s.%N)
        "$@"
        t1=$(date +%s.%N)
        echo "$t0 $t1" | awk '{printf "%.3f\n", $2 - $1}'
}

run_agent() {   # binary name run
        local d=$WORK/$2-$3
        rm -rf "$d" && mkdir -p "$d"
        cat > "$d/deploy.ini" <<INI
[agent]
state_dir = $d/state
worker_user = nobody
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
        elapsed "$1" -c "$d/deploy.ini" once 2>"$d/log"
        [ "$(find "$d/srv/current/" -type f | wc -l)" -eq "$FILES" ] || { echo "$2: release incomplete" >&2; exit 1; }
}

floor_unpack() {
        tar -C "$1" -xzf "$WORK/$SHA.tar.gz" && sync
}

run_floor() {   # run
        local d=$WORK/floor-$1
        rm -rf "$d" && mkdir -p "$d"
        elapsed floor_unpack "$d"
}

cleanup_runs() {
        rm -rf "$WORK"/new-* "$WORK"/old-* "$WORK"/floor-*
        sync
}

names=(new floor)
[ -n "$OLD_AGENT" ] && names=(old new floor)
: > "$WORK/times"
for i in $(seq "$RUNS"); do
        # rotate the order so that no binary always runs first
        order=("${names[@]:$((i % ${#names[@]}))}" "${names[@]:0:$((i % ${#names[@]}))}")
        line="run $i:"
        for n in "${order[@]}"; do
                cleanup_runs
                echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
                case $n in
                new) t=$(run_agent "$AGENT" new "$i") ;;
                old) t=$(run_agent "$OLD_AGENT" old "$i") ;;
                floor) t=$(run_floor "$i") ;;
                esac
                echo "$n $t" >> "$WORK/times"
                line="$line $n ${t}s"
        done
        echo "$line"
done
cleanup_runs

python3 - "$WORK/times" <<'PY'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    name, t = line.split()
    times.setdefault(name, []).append(float(t))
med = {k: statistics.median(v) for k, v in times.items()}
for k in ("old", "new", "floor"):
    if k in med:
        extra = f"  agent/floor {med[k] / med['floor']:.2f}" if k != "floor" else ""
        print(f"median {k}: {med[k]:.2f}s{extra}")
PY
