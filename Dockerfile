# The hestami image: the binary alone, static, on a distroless base, as a non-root
# user. It runs the sign-in service (hestami auth serve) and any command that needs
# no PostgreSQL programs. The database and backup containers run the PostgreSQL
# image instead (deploy/postgres/Dockerfile: postgres:17 with this same binary),
# since archive_command, restore_command, physical and logical backups and restore
# drills need PostgreSQL's own programs. See docs/deployment.md.
#
#   docker build --build-arg VERSION=1.4.0 -t ghcr.io/hestami/hestami:1.4.0 .

# The build stage is the same in deploy/postgres/Dockerfile (deploy/compose_test.go
# checks it), so the two images share its cached layers and carry the same binary.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/hestami ./cmd/hestami

FROM gcr.io/distroless/static-debian12:nonroot AS hestami
COPY --from=build /out/hestami /usr/local/bin/hestami
# nonroot is uid 65532: secret files the container reads must be readable by it.
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["hestami"]
CMD ["--help"]
