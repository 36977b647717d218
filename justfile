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

# Run the server (the binary arrives with the engine issue; until then this fails).
run *ARGS:
    cargo run --release --locked -p argyll -- {{ARGS}}

# Benchmarks of every crate that has them.
bench:
    cargo bench --workspace --locked

# What CI runs.
ci:
    .ci/run
