#!/usr/bin/env bash
# The one command that runs every test: installs what the tests need (only when
# missing), then the quality gates and the whole suite.
#   ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests talk to (real peers, never mocks): promtool and prometheus,
# redis, postgresql, and prometheus-alertmanager (amtool and the server).
apt_needed=()
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || apt_needed+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || apt_needed+=(systemd)
command -v redis-server >/dev/null 2>&1 || apt_needed+=(redis-server)
command -v amtool >/dev/null 2>&1 || apt_needed+=(prometheus-alertmanager)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_needed+=(postgresql)
command -v chromium >/dev/null 2>&1 || apt_needed+=(chromium)
if ((${#apt_needed[@]})); then
    echo "test.sh: installing ${apt_needed[*]}" >&2
    if [ "$(id -u)" != 0 ]; then
        echo "test.sh: need root to apt-get install ${apt_needed[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_needed[@]}" >/dev/null
fi

# Python packages: moto (the AWS API emulator) for the AWS checks' tests, aiosmtpd
# (a real SMTP server: STARTTLS, implicit TLS, AUTH) for the notification tests.
pip_needed=()
command -v moto_server >/dev/null 2>&1 || pip_needed+=("moto[server]")
python3 -c "import aiosmtpd" >/dev/null 2>&1 || pip_needed+=(aiosmtpd)
if ((${#pip_needed[@]})); then
    echo "test.sh: installing ${pip_needed[*]}" >&2
    python3 -m pip install -q "${pip_needed[@]}" 2>/dev/null \
        || python3 -m pip install -q --break-system-packages "${pip_needed[@]}"
fi

# Rust components for the quality gates.
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

# Nothing a test starts may reach AWS's metadata service (the embedded config has AWS
# checks); tests that run the exporter also point AWS_ENDPOINT_URL at loopback.
export AWS_EC2_METADATA_DISABLED=true

cargo fmt --check
# Check kinds are declared inside the `checks!` macro, which cargo fmt does not follow.
rustfmt --edition 2024 --check src/checks/*.rs src/checks/*/*.rs
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
