#!/usr/bin/env bash
# Installs what tests/nemesis.rs needs to build network namespaces, veths,
# a bridge and blackhole routes (`ip`) and to shape links (`tc`): iproute2.
# iptables is installed too for schedules that filter by rule. Does nothing
# when the tools are already there, and never fails the caller when it
# cannot install (not root, no apt-get, offline): the nemesis test then
# skips with a message saying why.
set -uo pipefail
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v tc >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-nemesis-deps: missing ${missing[*]}; need root and apt-get to install them" >&2
    exit 0
fi
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
echo "install-nemesis-deps: installing $pkgs" >&2
# shellcheck disable=SC2086
if ! (apt-get install -y --no-install-recommends $pkgs >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends $pkgs >/dev/null 2>&1; }); then
    echo "install-nemesis-deps: could not install $pkgs" >&2
fi
exit 0
