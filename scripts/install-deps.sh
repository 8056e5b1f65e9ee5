#!/usr/bin/env bash
# Installs what hestami needs to build, test and (with --bench) benchmark, from the
# Debian/Ubuntu package archive: a PostgreSQL server (13 or newer) and the unprivileged
# "postgres" OS user that clusters run as when the tests run as root; Node.js and npm,
# and with them the Azure Blob Storage emulator Azurite, which the tests run, from npm
# into ${XDG_CACHE_HOME:-~/.cache}/hestami/azurite (or $HESTAMI_AZURITE_DIR); Chromium, which
# the status page's browser test drives; redis-server, which the tests of the rate limits
# shared between replicas (package redis) run on loopback.
# Idempotent, and a no-op that returns at once when everything is already present.
#
# Usage: scripts/install-deps.sh [--bench]
#   --bench   also install pgbackrest and zstd, which bench/run.sh compares against
#
# Environment: HESTAMI_PG_BINDIR (a server install to use instead of the packages),
# HESTAMI_PG_USER (the cluster user, default postgres), HESTAMI_AZURITE_DIR (where
# Azurite goes).
#
# It never starts or stops system services: the cluster the Debian package creates
# (postgresql@<major>-main) is not used by hestami, whose tests run their own clusters.
set -euo pipefail

readonly MIN_PG_MAJOR=13

bench=0
for arg in "$@"; do
	case "$arg" in
	--bench) bench=1 ;;
	-h | --help)
		sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "install-deps: unknown argument '$arg'; usage: $0 [--bench]" >&2
		exit 2
		;;
	esac
done

# has_server DIR: DIR holds postgres, initdb and pg_ctl.
has_server() {
	[[ -x $1/postgres && -x $1/initdb && -x $1/pg_ctl ]]
}

# major_of DIR: the major version of DIR/postgres, from `postgres --version`.
major_of() {
	local v
	v=$("$1/postgres" --version 2>/dev/null) || return 1
	v=${v#*(PostgreSQL) }
	echo "${v%%[!0-9]*}"
}

# pg_server_found: the same search as postgres.FindBinaries.
pg_server_found() {
	if [[ -n ${HESTAMI_PG_BINDIR:-} ]]; then
		if has_server "$HESTAMI_PG_BINDIR" && (($(major_of "$HESTAMI_PG_BINDIR") >= MIN_PG_MAJOR)); then
			return 0
		fi
		echo "install-deps: HESTAMI_PG_BINDIR=$HESTAMI_PG_BINDIR holds no PostgreSQL server $MIN_PG_MAJOR or newer; fix or unset it" >&2
		exit 1
	fi
	local dir major
	for dir in /usr/lib/postgresql/*/bin; do
		major=${dir#/usr/lib/postgresql/}
		major=${major%/bin}
		# Debian names the directory after the major version; no need to run postgres.
		if [[ $major =~ ^[0-9]+$ ]] && ((major >= MIN_PG_MAJOR)) && has_server "$dir"; then
			return 0
		fi
	done
	if command -v pg_config >/dev/null; then
		dir=$(pg_config --bindir 2>/dev/null) || return 1
		if has_server "$dir" && (($(major_of "$dir") >= MIN_PG_MAJOR)); then
			return 0
		fi
	fi
	return 1
}

# as_root CMD...: runs CMD as root, through sudo when we are not root.
as_root() {
	if ((EUID == 0)); then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		echo "install-deps: need root to run '$*': run this script as root, install sudo, or install the packages yourself" >&2
		exit 1
	fi
}

packages=()
pg_server_found || packages+=(postgresql postgresql-contrib)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
# Debian's Chromium, for the status page's browser test (cmd/hestami, chromedp).
command -v chromium >/dev/null || packages+=(chromium)
# The zstd tool, which tests use to show a stored object decompresses by hand.
command -v zstd >/dev/null || packages+=(zstd)
# Redis, for package redis's tests (redistest starts its own servers on free loopback
# ports; the service the Debian package may set up on port 6379 is not used).
command -v redis-server >/dev/null || packages+=(redis-server)
if ((bench)); then
	command -v pgbackrest >/dev/null || packages+=(pgbackrest)
fi

if ((${#packages[@]} > 0)); then
	if ! command -v apt-get >/dev/null; then
		echo "install-deps: missing ${packages[*]} and no apt-get here; install PostgreSQL $MIN_PG_MAJOR+ server packages yourself and set HESTAMI_PG_BINDIR to the directory holding postgres" >&2
		exit 1
	fi
	echo "install-deps: installing ${packages[*]}" >&2
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
	if ! pg_server_found; then
		echo "install-deps: installed postgresql but found no PostgreSQL server $MIN_PG_MAJOR or newer in /usr/lib/postgresql/*/bin; this distribution's is too old: install a newer one (for example from the PGDG apt repository) and set HESTAMI_PG_BINDIR" >&2
		exit 1
	fi
fi

# PostgreSQL refuses to run as root, so root runs clusters as this user.
if ((EUID == 0)); then
	pg_user=${HESTAMI_PG_USER:-postgres}
	if ! getent passwd "$pg_user" >/dev/null; then
		echo "install-deps: creating system user $pg_user" >&2
		useradd --system --home /var/lib/postgresql --shell /bin/bash "$pg_user"
	fi
fi

# Azurite, the Azure Blob Storage emulator the tests run (blobtest.AzuriteVersion),
# into the user's cache: no root needed, nothing global.
readonly AZURITE_VERSION=3.37.0
azurite_dir=${HESTAMI_AZURITE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hestami/azurite}
if ! grep -qs "\"version\": \"$AZURITE_VERSION\"" "$azurite_dir/node_modules/azurite/package.json"; then
	echo "install-deps: installing azurite@$AZURITE_VERSION into $azurite_dir" >&2
	mkdir -p "$azurite_dir"
	if ! npm install --prefix "$azurite_dir" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2; then
		echo "install-deps: npm could not install azurite@$AZURITE_VERSION into $azurite_dir; the Azure storage tests need it: check npm's access to its registry (npm config get registry)" >&2
		exit 1
	fi
fi
