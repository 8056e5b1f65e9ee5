// Package deploy holds no code. Its directory holds the deployment files that are
// not at the repository root: the PostgreSQL image (postgres/), PgBouncer's
// configuration (pgbouncer/), pgAdmin's provisioning (pgadmin/) and the Grafana
// dashboard (grafana/). It is a Go package only for its tests: they load
// compose.yaml, compose.prod.yaml and the env file examples with compose-go, as
// docker compose does, and read the Dockerfiles, so that a change that publishes the
// database in production, lets pgAdmin in there, unpins an image, drops a
// healthcheck or puts a secret in the environment fails CI without a Docker engine.
// See docs/deployment.md.
package deploy
