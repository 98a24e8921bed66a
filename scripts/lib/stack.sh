# The whole reference stack on this machine: a collector (embedded store), the orchestrator, two workers
# and a Ruby worker, exporting their spans to the collector over OTLP/gRPC. Sourced by the demo and the
# benchmarks.
#   stack_start DATA_DIR LOG_DIR   # needs $DATABASE_URL and $bin (the built binaries)
#   stack_stop                     # SIGTERM to all, waits
#   stack_exit                     # stack_stop, then stops a throwaway PostgreSQL scripts/postgres
#                                  # started; run on EXIT / Ctrl-C by stack_start
# or in two parts, to keep one collector while the services restart with other settings:
#   stack_collector_start DATA_DIR LOG_DIR;  stack_services_start LOG_DIR;  stack_services_stop
# Ports: collector 4317/4318, orchestration 8080, workers 8081, 8083, 8085, … and the Ruby worker 8082
# (the seed's); overridable via HOPTRACE_*_PORT. HOPTRACE_WORKERS Rust workers (default 2),
# HOPTRACE_RUBY_WORKER=0 leaves the Ruby worker out.

stack_pids=()
stack_scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

stack_wait_http() { # URL
  for _ in $(seq 300); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}

stack_start() { # DATA_DIR LOG_DIR
  stack_collector_start "$1" "$2"
  stack_services_start "$2"
}

stack_collector_start() { # DATA_DIR LOG_DIR
  local data=$1 logs=$2
  mkdir -p "$logs"
  trap stack_exit EXIT
  trap 'stack_exit; exit 130' INT TERM
  local grpc=${HOPTRACE_GRPC_PORT:-4317} http=${HOPTRACE_HTTP_PORT:-4318}
  # The observer must not perturb what it observes: on a shared machine the collector yields the CPU.
  nice -n 10 "$bin/collector" --data-dir "$data" --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" \
    >>"$logs/collector.log" 2>&1 &
  stack_collector_pid=$!
  stack_wait_http "http://127.0.0.1:$http/health"
  export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$grpc" OTEL_EXPORTER_OTLP_PROTOCOL=grpc
}

stack_services_start() { # LOG_DIR
  local logs=$1
  export RUST_LOG="${RUST_LOG:-info,sqlx=warn}"
  local api=${HOPTRACE_API_PORT:-8080}
  "$bin/orchestration" --listen "127.0.0.1:$api" >>"$logs/orchestration.log" 2>&1 &
  stack_pids+=($!)
  stack_wait_http "http://127.0.0.1:$api/health"
  local i port ports=()
  for i in $(seq "${HOPTRACE_WORKERS:-2}"); do
    port=$((api + 2 * i - 1))
    ports+=("$port")
    OTEL_RESOURCE_ATTRIBUTES="service.instance.id=worker-$i" \
      "$bin/worker" --listen "127.0.0.1:$port" --concurrency "${HOPTRACE_WORKER_CONCURRENCY:-4}" \
      >>"$logs/worker-$i.log" 2>&1 &
    stack_pids+=($!)
  done
  if [[ ${HOPTRACE_RUBY_WORKER:-1} != 0 ]]; then
    ports+=("$((api + 2))")
    OTEL_RESOURCE_ATTRIBUTES="service.instance.id=ruby-worker-1" \
      "$bin/ruby-worker" --listen "127.0.0.1:$((api + 2))" --concurrency "${HOPTRACE_WORKER_CONCURRENCY:-4}" \
      >>"$logs/ruby-worker.log" 2>&1 &
    stack_pids+=($!)
  fi
  for port in "${ports[@]}"; do stack_wait_http "http://127.0.0.1:$port/health"; done
  export HOPTRACE_API="http://127.0.0.1:$api"
}

stack_stop() {
  # Services first, so their last spans reach the collector; then the collector flushes its store.
  stack_services_stop
  if [[ -n "${stack_collector_pid:-}" ]]; then
    kill -TERM "$stack_collector_pid" 2>/dev/null || true
    wait "$stack_collector_pid" 2>/dev/null || true
    stack_collector_pid=
  fi
}

stack_services_stop() {
  local pid
  for pid in "${stack_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${stack_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stack_pids=()
}

stack_exit() { # the services, then a throwaway PostgreSQL that scripts/postgres started for this run
  stack_stop
  if [[ -n "${HOPTRACE_PG_THROWAWAY_STARTED:-}" ]]; then
    "$stack_scripts/postgres" stop || true
    unset HOPTRACE_PG_THROWAWAY_STARTED
  fi
}

stack_services_cpu_seconds() { # CPU time used so far by the orchestrator and the workers
  local pid total=0 ticks
  ticks=$(getconf CLK_TCK)
  for pid in "${stack_pids[@]}"; do
    # utime and stime are fields 14 and 15 of /proc/PID/stat (after the parenthesised command name).
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  awk -v t="$total" -v k="$ticks" 'BEGIN { printf "%.3f", t / k }'
}
