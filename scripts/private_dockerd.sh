#!/usr/bin/env bash
# Start (or stop) a private Docker engine that never touches another engine on this machine:
# its own socket, data root, exec root, containerd namespace, and its own bridge with its
# own subnet (not docker0 / 172.17.0.0/16, which a developer's or CI runner's engine may
# be using). Needs root.
#
#   bash scripts/private_dockerd.sh start DIR   # prints DOCKER_HOST=unix://DIR/docker.sock
#   bash scripts/private_dockerd.sh stop DIR
#
# OSSCTL_TEST_SUBNET_OCTET (default: derived from the pid) picks 10.213.N.0/24 for the
# bridge; the user-defined networks tests create come from /28s of 10.214.N.0/24.
set -euo pipefail
cmd=${1:?start|stop}
DIR=${2:?directory}
mkdir -p "$DIR"
case "$cmd" in
start)
  # a bridge of our own (dockerd --bridge uses it as is, with the address we give it); one
  # that exists belongs to another private engine: take the next free number
  n=${OSSCTL_TEST_SUBNET_OCTET:-$(( $$ % 200 + 20 ))}
  # a restart over a kept DIR takes its bridge again (not a new one beside it)
  if [ -f "$DIR/bridge" ] && ip link show "$(cat "$DIR/bridge")" >/dev/null 2>&1; then
    br=$(cat "$DIR/bridge"); n=${br#ossbr}
  else
    for _ in $(seq 1 230); do
      br="ossbr$n"
      ip link add "$br" type bridge 2>/dev/null && break
      [ -n "${OSSCTL_TEST_SUBNET_OCTET:-}" ] && ip link show "$br" >/dev/null 2>&1 && break  # asked for by number
      n=$(( (n - 19) % 230 + 20 ))
    done
  fi
  ip addr replace "10.213.$n.1/24" dev "$br"
  ip link set "$br" up
  echo "$br" >"$DIR/bridge"
  # A kept data root remembers the default "bridge" network, and moby, finding it at start
  # with --default-address-pool set (and no --live-restore), deletes the link named docker0
  # of this network namespace (daemon_unix.go: removeDefaultBridgeInterface): the machine's
  # own Docker would lose its bridge. Starting without the network store avoids that; the
  # default, host and none networks are recreated (ossctl and the tests make no others, and
  # containers find the default bridge by name).
  rm -f "$DIR/root/network/files/local-kv.db"
  dockerd --host "unix://$DIR/docker.sock" --data-root "$DIR/root" --exec-root "$DIR/exec" \
    --pidfile "$DIR/pid" --bridge "$br" --iptables=false --ip-masq=false \
    --default-address-pool "base=10.214.$n.0/24,size=28" \
    --containerd-namespace "ossctl-$n" --containerd-plugins-namespace "ossctl-$n-plugins" \
    >"$DIR/dockerd.log" 2>&1 &
  for _ in $(seq 1 120); do
    DOCKER_HOST="unix://$DIR/docker.sock" docker version >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! DOCKER_HOST="unix://$DIR/docker.sock" docker version --format '{{.Server.Version}}' >&2; then
    tail -20 "$DIR/dockerd.log" >&2
    exit 1
  fi
  echo "DOCKER_HOST=unix://$DIR/docker.sock"
  ;;
stop)
  if [ -f "$DIR/pid" ]; then
    pid=$(cat "$DIR/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  if [ -f "$DIR/bridge" ]; then ip link del "$(cat "$DIR/bridge")" 2>/dev/null || true; fi
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
