#!/usr/bin/env bash
# Installs the Debian packages the test suite talks to, when they are missing.
# Under CI=true a component that is still missing afterwards fails the run: nothing is skipped.
set -euo pipefail
# vsftpd lives in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

# command-to-check  debian-package
needed=(
  "curl curl"
  "mosquitto_pub mosquitto-clients"
  "mosquitto_sub mosquitto-clients"
  "vsftpd vsftpd"
  "pg_ctlcluster postgresql"
  "chromium chromium"
)

missing_pkgs=()
for pair in "${needed[@]}"; do
  cmd=${pair%% *}; pkg=${pair##* }
  command -v "$cmd" >/dev/null 2>&1 || missing_pkgs+=("$pkg")
done

if [ ${#missing_pkgs[@]} -gt 0 ]; then
  mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u)
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: installing ${missing_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
  else
    echo "system-deps: missing Debian packages: ${missing_pkgs[*]}" >&2
    echo "system-deps: install them with: sudo apt-get install ${missing_pkgs[*]}" >&2
  fi
fi

status=0
for pair in "${needed[@]}"; do
  cmd=${pair%% *}; pkg=${pair##* }
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "system-deps: '$cmd' (Debian package $pkg) is not available" >&2
    status=1
  fi
done
if [ $status -ne 0 ] && [ "${CI:-}" = "true" ]; then
  echo "system-deps: CI=true and a test component is missing: failing instead of skipping" >&2
  exit 1
fi
exit 0
