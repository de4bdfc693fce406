#!/usr/bin/env bash
# Start (or stop) three private Docker engines for fleet tests, each in its own network
# namespace, reached the three ways the docker CLI reaches an engine:
#   engine 1: unix:// socket
#   engine 2: tcp://ADDR:2376 with TLS (a CA, server and client certificates made here)
#   engine 3: ssh://root@ADDR (Debian's sshd inside that namespace, key auth only)
# Each engine has its own data root, exec root, pidfile, socket, containerd namespace and
# bridge with its own subnet (10.216.K.64*i/26), inside its namespace; the namespaces
# hang off a bridge ofbK (10.215.K.0/24) in the root namespace, engine i at 10.215.K.(10+i).
# K is the first free number from 20 up (the bridge name is the claim), so several runs
# on one machine never collide. Needs root.
#
#   bash scripts/fleet_engines.sh start DIR   # writes DIR/engines.json, prints its path
#   bash scripts/fleet_engines.sh stop DIR    # stops everything start made; idempotent
#   bash scripts/fleet_engines.sh reap        # stops runs whose owner process is gone
#
# dockerd is started with `nsenter --net=` (not `ip netns exec`, which remounts /sys and
# makes dockerd fail with "Devices cgroup isn't mounted").
set -euo pipefail
cmd=${1:?start|stop|reap}
N=3

wait_gone() { for _ in $(seq 1 80); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.25; done; kill -9 "$1" 2>/dev/null || true; }

stop_dir() {
  local DIR=$1 k i
  [ -f "$DIR/k" ] || return 0
  k=$(cat "$DIR/k")
  for i in $(seq 1 $N); do
    for pf in "$DIR/e$i/sshd.pid" "$DIR/e$i/pid"; do
      if [ -f "$pf" ]; then
        pid=$(cat "$pf")
        kill "$pid" 2>/dev/null || true
        wait_gone "$pid"
      fi
    done
    # what is left in the namespace: ssh sessions (sshd forks one per login), their
    # `docker system dial-stdio`, containerd shims
    pids=$(ip netns pids "ossfl$k-$i" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      kill $pids 2>/dev/null || true
      for pid in $pids; do wait_gone "$pid"; done
    fi
    ip netns del "ossfl$k-$i" 2>/dev/null || true
    ip link del "ofv${k}h$i" 2>/dev/null || true  # gone with the namespace, unless a process kept it
  done
  ip link del "ofb$k" 2>/dev/null || true
  # overlay and netns mounts a killed dockerd may have left behind
  grep -o " $DIR/[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$DIR" 2>/dev/null || true
}

case "$cmd" in
stop)
  stop_dir "${2:?directory}"
  ;;
reap)
  for d in /tmp/ossfl-*; do
    [ -f "$d/owner" ] || continue
    kill -0 "$(cat "$d/owner")" 2>/dev/null || stop_dir "$d"
  done
  ;;
start)
  DIR=${2:?directory}
  mkdir -p "$DIR"
  echo "${OSSCTL_FLEET_OWNER:-$PPID}" >"$DIR/owner"
  k=""
  for c in $(seq 20 250); do
    if ip link add "ofb$c" type bridge 2>/dev/null; then k=$c; break; fi
  done
  [ -n "$k" ] || { echo "no free 10.215.K.0/24 for the fleet bridge" >&2; exit 1; }
  echo "$k" >"$DIR/k"
  trap 'stop_dir "$DIR"' ERR
  ip addr add "10.215.$k.1/24" dev "ofb$k"
  ip link set "ofb$k" up
  mkdir -p /run/sshd

  # TLS for engine 2: CA, server (IP SAN), client; and a second CA with its own client
  # certificate, which the engine must refuse
  T=$DIR/tls
  mkdir -p "$T/server" "$T/client" "$T/wrong"
  addr2="10.215.$k.12"
  (
    cd "$T"
    for ca in ca wrongca; do
      openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ossctl-test-$ca" \
        -keyout "$ca-key.pem" -out "$ca.pem" 2>/dev/null
    done
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$addr2" -keyout server/key.pem -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$addr2" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
      -extfile server.ext -out server/cert.pem 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    for who in client:ca wrong:wrongca; do
      d=${who%%:*}; ca=${who##*:}
      openssl req -newkey rsa:2048 -nodes -subj "/CN=ossctl-test-$d" -keyout "$d/key.pem" -out "$d.csr" 2>/dev/null
      openssl x509 -req -in "$d.csr" -CA "$ca.pem" -CAkey "$ca-key.pem" -CAcreateserial -days 2 \
        -extfile client.ext -out "$d/cert.pem" 2>/dev/null
      cp "$ca.pem" "$d/ca.pem"
    done
    cp ca.pem server/ca.pem
  )

  for i in $(seq 1 $N); do
    ns="ossfl$k-$i"; E=$DIR/e$i; addr="10.215.$k.$((10 + i))"
    mkdir -p "$E"
    ip netns add "$ns"
    ip link del "ofv${k}h$i" 2>/dev/null || true  # left by a run whose bridge is gone (we hold ofb$k)
    ip link add "ofv${k}h$i" type veth peer name "ofv${k}n$i"
    ip link set "ofv${k}n$i" netns "$ns"
    ip link set "ofv${k}h$i" master "ofb$k" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$addr/24" dev "ofv${k}n$i"
    ip -n "$ns" link set "ofv${k}n$i" up
    br="ofd${k}x$i"
    ip -n "$ns" link add "$br" type bridge
    ip -n "$ns" addr add "10.216.$k.$((64 * i + 1))/26" dev "$br"
    ip -n "$ns" link set "$br" up
    hosts=(--host "unix://$E/docker.sock")
    if [ "$i" = 2 ]; then
      hosts+=(--host "tcp://$addr:2376" --tlsverify --tlscacert "$T/server/ca.pem"
              --tlscert "$T/server/cert.pem" --tlskey "$T/server/key.pem")
    fi
    nsenter --net="/var/run/netns/$ns" dockerd "${hosts[@]}" --data-root "$E/root" --exec-root "$E/exec" \
      --pidfile "$E/pid" --bridge "$br" --iptables=false --ip6tables=false --ip-masq=false \
      --default-address-pool "base=10.217.$k.0/24,size=28" \
      --containerd-namespace "ossfl$k-$i" --containerd-plugins-namespace "ossfl$k-$i-plugins" \
      >"$E/dockerd.log" 2>&1 &
    echo "$addr" >"$E/addr"
  done

  # ssh for engine 3: host key, a client key the server accepts and one it does not
  S=$DIR/ssh; addr3="10.215.$k.13"
  mkdir -p "$S" "$DIR/bin" "$DIR/bin-wrongkey"
  ssh-keygen -q -t ed25519 -N "" -f "$S/host_key"
  ssh-keygen -q -t ed25519 -N "" -f "$S/id_ed25519"
  ssh-keygen -q -t ed25519 -N "" -f "$S/wrong_key"
  cp "$S/id_ed25519.pub" "$S/authorized_keys"
  echo "$addr3 $(cut -d' ' -f1,2 "$S/host_key.pub")" >"$S/known_hosts"
  cat >"$S/sshd_config" <<EOF
ListenAddress $addr3
Port 22
HostKey $S/host_key
PidFile $DIR/e3/sshd.pid
AuthorizedKeysFile $S/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
SetEnv DOCKER_HOST=unix://$DIR/e3/docker.sock
EOF
  for which in id_ed25519:config wrong_key:config-wrongkey; do
    key=${which%%:*}; conf=${which##*:}
    cat >"$S/$conf" <<EOF
Host $addr3
  User root
  IdentityFile $S/$key
  IdentitiesOnly yes
  UserKnownHostsFile $S/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
EOF
  done
  # the docker SDK runs plain `ssh`: these wrappers, first on PATH, point it at the
  # test's config (ssh reads ~/.ssh from the passwd entry, not $HOME)
  printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$S/config" >"$DIR/bin/ssh"
  printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$S/config-wrongkey" >"$DIR/bin-wrongkey/ssh"
  chmod 755 "$DIR/bin/ssh" "$DIR/bin-wrongkey/ssh"
  nsenter --net="/var/run/netns/ossfl$k-3" /usr/sbin/sshd -f "$S/sshd_config" -E "$S/sshd.log"

  for i in $(seq 1 $N); do
    ok=""
    for _ in $(seq 1 120); do
      if DOCKER_HOST="unix://$DIR/e$i/docker.sock" docker version >/dev/null 2>&1; then ok=1; break; fi
      sleep 0.5
    done
    if [ -z "$ok" ]; then tail -20 "$DIR/e$i/dockerd.log" >&2; exit 1; fi
  done
  cat >"$DIR/engines.json" <<EOF
{"k": $k, "bridge": "ofb$k",
 "engines": [
  {"name": "unix", "docker_host": "unix://$DIR/e1/docker.sock", "addr": "10.215.$k.11", "netns": "ossfl$k-1", "socket": "unix://$DIR/e1/docker.sock"},
  {"name": "tls", "docker_host": "tcp://$addr2:2376", "addr": "$addr2", "netns": "ossfl$k-2", "socket": "unix://$DIR/e2/docker.sock",
   "cert_path": "$T/client", "wrong_cert_path": "$T/wrong"},
  {"name": "ssh", "docker_host": "ssh://root@$addr3", "addr": "$addr3", "netns": "ossfl$k-3", "socket": "unix://$DIR/e3/docker.sock",
   "ssh_bin": "$DIR/bin", "wrong_ssh_bin": "$DIR/bin-wrongkey"}
 ]}
EOF
  trap - ERR
  echo "$DIR/engines.json"
  ;;
*) echo "usage: $0 start DIR | stop DIR | reap" >&2; exit 2 ;;
esac
