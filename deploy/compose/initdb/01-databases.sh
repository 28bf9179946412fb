#!/usr/bin/env bash
# Run once by the postgres image, on its first start with an empty volume: one
# database per Folio service, each owned by a role of the same name that nobody
# else may connect as, whose password is the one in the service's pgpass secret
# (secrets.sh makes them; compose.yaml mounts them here and in the service). The
# password goes from the file to psql's \set, never on a command line.
set -euo pipefail

database() { # the service's name: its role and its database
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set=name="$1" --set=pgpass="/run/secrets/$1.pgpass" <<'SQL'
\set password `cut -d: -f5- :'pgpass'`
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
}

database book
database author
database auth
database notify
database inventory
database payment
database order
