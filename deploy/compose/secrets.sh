#!/usr/bin/env bash
# Makes the files deploy/compose/compose.yaml reads its secrets from, under
# deploy/compose/secrets/ (git-ignored), keeping any that exist: run it again and
# nothing changes. A new secrets key would leave the data it sealed unreadable and
# a new database password would no longer match the role the first start created,
# so keep that directory as you keep the volumes' backups.
#
#   nats/<program>.nk       each program's NATS nkey seed (FOLIO_NATS_NKEY_FILE)
#   nats-auth.conf          the authorization block admitting those nkeys, which
#                           nats.conf includes (public keys and permissions only)
#   <service>.pgpass        book, author, auth, notify: the password of the
#                           service's own PostgreSQL role, as a pgpass line
#   postgres-password       the password of PostgreSQL's superuser
#   <service>-secrets.key   auth, notify: the key that seals their secrets at rest
#   admin.env               auth: FOLIO_ADMIN_EMAIL and FOLIO_ADMIN_PASSWORD, the
#                           first admin account
#
# Settings (environment): FOLIO_COMPOSE_SECRETS (the directory, default
# deploy/compose/secrets), FOLIO_ADMIN_EMAIL (default admin@folio.local), FOLIO
# (the folio command; default: go run ./cmd/folio in the repository).
#
# Compose mounts a secret's file as it is on the host (the uid, gid and mode of a
# service's secrets apply only under Swarm), and the programs run as user 65532,
# PostgreSQL as its own user: the files are readable by all (0644), inside a
# directory only you may enter (0700).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${FOLIO_COMPOSE_SECRETS:-$here/secrets}"
folio=(${FOLIO:-go run "$root/cmd/folio"})

mkdir -p "$dir/nats"
chmod 0700 "$dir"

# random prints n random bytes as base64 without '+', '/' or '=', which a URL, a
# pgpass line and an env file all take as they are.
random() { head -c "$1" /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_'; }

# made creates file (readable by the containers' users) with what its command
# prints, unless it exists.
made() {
  local file=$1; shift
  [ -s "$file" ] && return 0
  (umask 077; "$@" > "$file.tmp")
  chmod 0644 "$file.tmp"
  mv "$file.tmp" "$file"
  echo "made $file"
}

# One nkey seed per program (folio nats keeps those present) and the block that
# admits them, written again every run: it follows from the seeds.
(cd "$root" && "${folio[@]}" nats --keys-dir "$dir/nats") > "$dir/nats-auth.conf.tmp"
mv "$dir/nats-auth.conf.tmp" "$dir/nats-auth.conf"
chmod 0644 "$dir/nats-auth.conf" "$dir"/nats/*.nk

for service in book author auth notify; do
  # host:port:database:user:password, the service's role owning its database
  # (initdb/01-databases.sh creates both from this file).
  made "$dir/$service.pgpass" eval 'echo "*:*:$service:$service:$(random 24)"'
done
made "$dir/postgres-password" random 24
for service in auth notify; do
  made "$dir/$service-secrets.key" eval 'head -c 32 /dev/urandom | base64'
done
made "$dir/admin.env" eval 'printf "FOLIO_ADMIN_EMAIL=%s\nFOLIO_ADMIN_PASSWORD=%s\n" "${FOLIO_ADMIN_EMAIL:-admin@folio.local}" "$(random 18)"'
