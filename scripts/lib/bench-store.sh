# Sourced by the benchmarks over the synthetic bench store: `bench_store SPANS` makes the store (once per
# generator and segment-writer version, kept under the target directory) and prints its path.
# Needs $bin (the built binaries) and the repository as the working directory.
bench_store() {
  local spans=$1
  # One-step tasks are 18 spans each: about 556,000 traces for ten million spans.
  local tasks=$((spans / 18))
  local store
  store="$CARGO_TARGET_DIR/bench-report-store-$tasks-$(cat analyzer/src/synthetic.rs store/src/schema.rs store/src/{segment,columns}/*.rs | sha1sum | cut -c1-8)"
  if [[ ! -f "$store/.complete" ]]; then
    rm -rf "$store"
    "$bin/analyzer" generate --store "$store" --tasks "$tasks" --steps 1 --run-id bench >&2
    touch "$store/.complete"
  fi
  echo "$store"
}
