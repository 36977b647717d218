# Common tasks. `just` alone runs lint and tests.

set shell := ["bash", "-euo", "pipefail", "-c"]

default: lint test

# The whole test suite (the same command as README.md and .ci/run).
test:
    scripts/test

# Formatting check and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Run the server (embedded store unless ENGINE_REDIS_ADDR is set).
run *ARGS:
    cargo run --release --locked -p argyll -- {{ARGS}}

# The load harness, short: every scenario for 3 s against an engine it starts (embedded store).
bench:
    cargo build --release --locked -p argyll -p argyll-bench
    target/release/argyll-bench --duration 3

# The load harness with any arguments (see `target/release/argyll-bench --help`).
load *ARGS:
    cargo build --release --locked -p argyll -p argyll-bench
    target/release/argyll-bench {{ARGS}}

# Criterion micro-benchmarks of every crate that has them.
microbench:
    cargo bench --workspace --locked

# What CI runs.
ci:
    .ci/run
