#!/usr/bin/env bash
# Installs the Debian packages ballast needs, for the groups named on the
# command line: build (always), test, fuzz, bench. As root it runs apt-get;
# otherwise it prints the exact apt-get line and exits 1.
set -euo pipefail

pkgs=(cmake make gcc pkg-config libuv1-dev libhttp-parser-dev libjansson-dev libfyaml-dev
      libcurl4-openssl-dev)
for group in "$@"; do
	case "$group" in
	build) ;;
	test) pkgs+=(libcmocka-dev) ; command -v python3 >/dev/null || pkgs+=(python3) ;;
	fuzz) pkgs+=(clang libclang-rt-14-dev) ;;
	bench) pkgs+=(wrk redis-server redis-tools libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev) ; command -v python3 >/dev/null || pkgs+=(python3) ;;
	*) echo "deps.sh: unknown group '$group' (accepted: build test fuzz bench)" >&2; exit 2 ;;
	esac
done

missing=()
for p in "${pkgs[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "ballast needs these Debian packages; install them and run make again:" >&2
	echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
