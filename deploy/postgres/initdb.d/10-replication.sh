# Sourced by the postgres image's entrypoint once, when it creates the cluster.
#
# Physical backups (hestami backup push --type physical, the backup daemon, in the
# backup container) stream the base backup over a replication connection, which the
# image's pg_hba.conf only allows from inside the db container. Allow it from the
# other containers, with the same password authentication as ordinary connections.
printf '\n# hestami: physical backups from the backup container\nhost replication all all %s\n' \
	"${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$PGDATA/pg_hba.conf"
