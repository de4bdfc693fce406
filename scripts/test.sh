#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, start the services
# it uses (a private dockerd), and run the tests. Needs root (apt-get, dockerd).
# Caches (llama.cpp build, npm packages) live in $OSSCTL_CI_CACHE (~/.cache/ossctl-ci),
# outside the clone, keyed by version.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE="${OSSCTL_CI_CACHE:-$HOME/.cache/ossctl-ci}"
mkdir -p "$CACHE"
ANVIL_VERSION=1.7.1
SOLC_VERSION=0.8.30

step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

step "Debian packages"
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v wrk >/dev/null || need+=(wrk)
command -v prometheus >/dev/null || need+=(prometheus)  # tests/plugins/prometheus.py scrapes `ossctl metrics serve`
# fleet tests: engines in network namespaces (iproute2, nsenter), one over ssh, one over
# TLS; the front-door image takes busybox from busybox-static, and Debian's caddy (2.6)
# is the old Caddy ossctl must refuse
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
command -v openssl >/dev/null || need+=(openssl)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
[ -x /bin/busybox ] || need+=(busybox-static)
[ -x /usr/bin/caddy ] || need+=(caddy)
# the HAProxy front-door test image: Debian's haproxy binary (+ perl-base, always there)
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

step "Python packages"
python3 -m pip install -q --disable-pip-version-check -e ".[test]"

step "npm packages (anvil $ANVIL_VERSION, solc $SOLC_VERSION)"
NODE_DIR="$CACHE/node-anvil$ANVIL_VERSION-solc$SOLC_VERSION"
if [ ! -x "$NODE_DIR/node_modules/.bin/anvil" ] || [ ! -x "$NODE_DIR/node_modules/.bin/solcjs" ]; then
  mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && npm init -y >/dev/null 2>&1 && npm install --no-audit --no-fund --loglevel=error \
     "@foundry-rs/anvil@$ANVIL_VERSION" "solc@$SOLC_VERSION" >/dev/null)
fi
export OSSCTL_TEST_NODE_BIN="$NODE_DIR/node_modules/.bin"

step "llama.cpp CPU build (cached)"
OSSCTL_TEST_LLAMA_BIN=$(bash .ci/build_llama.sh)
export OSSCTL_TEST_LLAMA_BIN

step "private dockerd (own bridge and subnet)"
DOCKER_TMP=$(mktemp -d /tmp/ossctl-dockerd.XXXXXX)
cleanup() {
  bash scripts/private_dockerd.sh stop "$DOCKER_TMP" || true
  rm -rf "$DOCKER_TMP" 2>/dev/null || true
}
trap cleanup EXIT
bash scripts/fleet_engines.sh reap || true  # engines a killed earlier run left behind
line=$(bash scripts/private_dockerd.sh start "$DOCKER_TMP")
export OSSCTL_TEST_DOCKER_HOST="${line#DOCKER_HOST=}"

step "tests"
python3 -m pytest -q -p no:cacheprovider "$@"
