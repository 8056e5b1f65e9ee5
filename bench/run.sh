#!/usr/bin/env bash
# Runs the hestami benchmark (make bench): hestami against pg_basebackup, pgBackRest,
# pg_dump and cp+sync on a fresh PostgreSQL cluster, minimum of N runs, in one run.
# Needs the PostgreSQL server, pgbackrest and zstd (scripts/install-deps.sh --bench).
#
# Usage: bench/run.sh [--scale 50] [--runs 3] [--json FILE] [--steps LIST] [--dir DIR] [--keep]
#   bench/run.sh --scale 5 --runs 1     a quick run
#   bench/run.sh --help                 every flag
set -euo pipefail
cd "$(dirname "$0")/.."
# The binary measured is the current source's, whether or not make built it just now.
go build -o bin/hestami ./cmd/hestami
exec go run ./bench "$@"
