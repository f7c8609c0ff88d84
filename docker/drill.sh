#!/usr/bin/env bash
# Failure drill with Docker: stop a gateway site, watch both dnsfail instances withdraw it,
# restore it, then drain and undrain it through the control API.  Cleans up on exit
# (KEEP=1 leaves the containers running).  Without Docker: python -m dnsfail.drill.
#
#   COMPOSE="docker compose" | docker-compose   default: v2 if the plugin is there, else 1.29
#   TIMEOUT=90                                  seconds each step may take
# The bases and the build network come from compose.yaml's variables (DNSFAIL_BASE, ...).
set -euo pipefail
cd "$(dirname "$0")"

NS=(172.29.53.21 172.29.53.22)
EU=172.29.53.11
US=172.29.53.12
NAME=api.gw.example.com
TIMEOUT=${TIMEOUT:-90}
if [ -z "${COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"
  elif command -v docker-compose >/dev/null; then COMPOSE=docker-compose
  else echo "drill.sh: neither 'docker compose' nor docker-compose is installed" >&2; exit 2
  fi
fi
echo "== using $($COMPOSE version 2>/dev/null | head -n1)"

# shellcheck disable=SC2086  # COMPOSE is a command and its arguments
compose() { $COMPOSE -p dnsfail-drill -f compose.yaml "$@"; }
cleanup() { [ "${KEEP:-0}" = 1 ] || compose down --volumes --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

ask() { compose exec -T client dig +short +time=1 +tries=1 @"$1" "$NAME" A | sort | paste -sd' ' -; }

show() {
  echo "== $1"
  for ns in "${NS[@]}"; do echo "  dig @$ns $NAME -> $(ask "$ns")"; done
}

# wait_for WANT: poll both instances until each answers exactly WANT; print how long it took.
wait_for() {
  local want=$1 start=$SECONDS ns
  for ns in "${NS[@]}"; do
    until [ "$(ask "$ns")" = "$want" ]; do
      if (( SECONDS - start > TIMEOUT )); then
        echo "FAILED: $ns still answers '$(ask "$ns")', wanted '$want' after ${TIMEOUT}s" >&2
        compose ps >&2
        compose logs --tail=30 ns1 ns2 >&2
        exit 1
      fi
      sleep 0.5
    done
    echo "  $ns: $want after $(( SECONDS - start ))s"
  done
}

echo "== building and starting: ns1, ns2, site-eu/us/ap, client"
# Not `up --wait` (v2 only): ns1 and ns2 start once the sites are healthy (depends_on), and
# wait_for polls until both answer.
SECONDS=0
compose build
echo "  built in ${SECONDS}s"
compose up --detach
show "all sites up"
wait_for "$EU"

echo "== stopping site-eu"
compose stop site-eu
wait_for "$US"
show "eu down: both instances answer us"

echo "== restoring site-eu"
compose start site-eu
wait_for "$EU"
show "eu restored"

echo "== draining eu through each instance's control API (loopback inside the container)"
for svc in ns1 ns2; do
  compose exec -T "$svc" dnsfail drain "$EU" --for 5m --reason "docker drill"
done
wait_for "$US"
for svc in ns1 ns2; do
  compose exec -T "$svc" dnsfail status
  compose exec -T "$svc" dnsfail undrain "$EU"
done
wait_for "$EU"
echo "drill passed"
