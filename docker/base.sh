#!/usr/bin/env bash
# A local base image from Debian packages, for machines that cannot pull the official Python
# image: debootstrap (minbase) with python3, python3-venv, libcap2-bin and ca-certificates,
# imported with `docker import`.  The certificate authorities this machine adds to its trust
# store (/usr/local/share/ca-certificates, e.g. a proxy's) are added to the image's too, so
# that pip inside the build reaches the package index the way the host does.  Then:
#   docker build --build-arg BASE=dnsfail-base:bookworm -f docker/Dockerfile -t dnsfail .
#
#   docker/base.sh [TAG]      default dnsfail-base:bookworm; kept if it exists (REBUILD=1)
#   SUITE=bookworm            the Debian release (its python3 must be >= 3.11)
#   MIRROR=URL                default: the mirror apt uses on this machine, else debootstrap's
#
# Needs root (debootstrap), debootstrap and a docker CLI (DOCKER_HOST is honoured).  Takes
# about a minute and makes an image of about 150 MB.
set -euo pipefail

TAG=${1:-dnsfail-base:bookworm}
SUITE=${SUITE:-bookworm}

# The first Debian mirror in apt's sources for $SUITE: deb822 (*.sources) or one-line style.
apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v suite="$SUITE" '
      /^[[:space:]]*$/ { if (uri && ok && deb) { print uri; exit } uri = ""; ok = 0; deb = 0; next }
      tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
      END { if (uri && ok && deb) print uri }' "$f" | head -n1
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk -v suite="$SUITE" '$1 == "deb" && $0 !~ /\[/ && $3 == suite { print $2; exit }' "$f"
  done
}

if [ "${REBUILD:-0}" != 1 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base.sh: $TAG exists (REBUILD=1 to build it again)"
  exit 0
fi
MIRROR=${MIRROR:-$(apt_mirror | grep -m1 -E '^https?://' || true)}
dir=$(mktemp -d /tmp/dnsfail-base.XXXXXX)
trap 'rm -rf "$dir" "$dir.log"' EXIT

echo "base.sh: debootstrap $SUITE from ${MIRROR:-the default mirror of debootstrap}"
# shellcheck disable=SC2086  # an empty MIRROR is no argument: debootstrap's default
debootstrap --variant=minbase --include=python3,python3-venv,libcap2-bin,ca-certificates \
  "$SUITE" "$dir" ${MIRROR} >"$dir.log" 2>&1 || { tail -n 30 "$dir.log" >&2; exit 1; }
rm -f "$dir.log"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/"
  chroot "$dir" update-ca-certificates >/dev/null
fi
# What an image does not need: downloaded packages, package lists, documentation.
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* \
       "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/*

tar --numeric-owner -C "$dir" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["/bin/bash"]' \
  - "$TAG" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$TAG")
echo "base.sh: built $TAG, $((size / 1000000)) MB"
