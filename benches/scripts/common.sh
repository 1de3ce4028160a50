# Shared helpers for the comparison scripts (sourced, not run).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$ROOT/target/release
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
PIDS=()
cleanup() { for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

need() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing Debian package $2" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # port: waits up to 20 s for a listener
  for _ in $(seq 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on port $1" >&2; return 1
}

peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

warm_up() { # url: 2 s of light load before a measured run
  wrk -t1 -c10 -d2s "$1" >/dev/null
}

# wrk_run URL -> prints "rps p99_ms"
wrk_run() {
  local out
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$1")
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}' <<<"$out")
  local errors
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  [ -z "$errors" ] || echo "  wrk: $errors" >&2
  echo "$rps $p99"
}

start_bluegreen() { # port name version: a bluegreen-service, tracing at the X-Ray default rate
  SERVICE_PORT=$1 SERVICE_NAME=$2 SERVICE_VERSION=$3 XRAY_SAMPLING=default "$BIN/bluegreen-service" >/dev/null 2>&1 &
  PIDS+=("$!"); wait_port "$1"
}

# nginx_conf DIR PORT BLUE_PORT GREEN_PORT MAIN_DIRECTIVES: writes DIR/nginx.conf, nginx
# as a 90/10 weighted proxy over the two services with upstream keep-alive.
nginx_conf() {
  cat > "$1/nginx.conf" <<CONF
$5
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  upstream split {
    server 127.0.0.1:$3 weight=9;
    server 127.0.0.1:$4 weight=1;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:$2;
    location / {
      proxy_pass http://split;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
}
