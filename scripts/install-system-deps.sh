#!/usr/bin/env bash
# Debian packages the test suite uses: dnsmasq (a real DNS daemon), iproute2 (network
# namespaces for simulated pods), util-linux (unshare for PID namespaces), procps, and Java 17
# to run h2o.jar. Installs only what is missing, and only as root; otherwise says what the
# tests that need them will skip.
set -euo pipefail

need=()
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v pgrep >/dev/null 2>&1 || need+=(procps)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v curl >/dev/null 2>&1 || need+=(curl)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "not root: cannot install ${need[*]}; the tests that need them will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "installed: ${need[*]}"
