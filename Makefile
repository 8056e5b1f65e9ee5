# The two commands a developer needs: `make run` and `make test`.
GO ?= go

.PHONY: deps build run test bench fuzz

# Installs the PostgreSQL server (and the postgres OS user) if missing; fast when present.
deps:
	bash scripts/install-deps.sh

build:
	$(GO) build -o bin/hestami ./cmd/hestami

run: deps build
	./bin/hestami dev

test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...

bench: build
	bash scripts/install-deps.sh --bench
	./bench/run.sh

fuzz:
	$(GO) test ./backup -run '^$$' -fuzz '^FuzzParseWALName$$' -fuzztime 20s
	$(GO) test ./backup -run '^$$' -fuzz '^FuzzDecodeManifest$$' -fuzztime 20s
