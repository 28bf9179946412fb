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
#   <service>.pgpass        book, author, auth, notify, inventory, payment, order:
#                           the password of the service's own PostgreSQL role, as
#                           a pgpass line
#   postgres-password       the password of PostgreSQL's superuser
#   <service>-secrets.key   auth, notify: the key that seals their secrets at rest
#   admin.env               auth: FOLIO_ADMIN_EMAIL and FOLIO_ADMIN_PASSWORD, the
#                           first admin account
#   payment-card.key        payment: the X25519 private key card data is sealed
#                           to (FOLIO_PAYMENT_CARD_KEY_FILE)
#   order.env               order: FOLIO_PAYMENT_CARD_PUBLIC_KEY, its public half
#                           (`payment --card-public-key`), written again every run
#
# With --kafka (for kafka.yaml), it also checks the files kafka.yaml mounts, which
# it cannot make: they come from your Kafka's operator, and a password made here
# would match no user of that cluster. It names each one missing and fails.
#
#   kafka/ca.pem              the CA that signed the brokers' certificates (PEM)
#   kafka/<program>.password  book, author, auth, notify, inventory, payment,
#                             order, gateway: the password of the program's SCRAM
#                             user, alone on its line
#
# Settings (environment): FOLIO_COMPOSE_SECRETS (the directory, default
# deploy/compose/secrets), FOLIO_ADMIN_EMAIL (default admin@folio.local), FOLIO
# (the folio command; default: go run ./cmd/folio in the repository),
# FOLIO_PAYMENT_COMMAND (the payment command; default: go run ./cmd/payment).
#
# Compose mounts a secret's file as it is on the host (the uid, gid and mode of a
# service's secrets apply only under Swarm), and the programs run as user 65532,
# PostgreSQL as its own user: the files are readable by all (0644), inside a
# directory only you may enter (0700).
set -euo pipefail
kafka=false
for arg in "$@"; do
  case $arg in
    --kafka) kafka=true ;;
    *) echo "usage: $0 [--kafka]" >&2; exit 2 ;;
  esac
done
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${FOLIO_COMPOSE_SECRETS:-$here/secrets}"
folio=(${FOLIO:-go run "$root/cmd/folio"})
payment=(${FOLIO_PAYMENT_COMMAND:-go run "$root/cmd/payment"})
programs=(book author auth notify inventory payment order gateway)
services=(book author auth notify inventory payment order)

mkdir -p "$dir/nats"
chmod 0700 "$dir"

# The Kafka credentials, first, so that no secret is made when one is missing:
# checked, made readable by the programs' user as the files below are (0644 in
# the 0700 directory), never made.
if $kafka; then
  missing=0
  lack() { echo "secrets.sh: $1: $2" >&2; missing=1; }
  ca="$dir/kafka/ca.pem"
  if [ ! -s "$ca" ]; then
    lack "$ca" "missing: the CA that signed your Kafka brokers' certificates (PEM)"
  elif grep -q -- 'PRIVATE KEY-----' "$ca"; then
    # It would be mounted in every container, and sign certificates for anyone.
    lack "$ca" "holds a private key: only the CA's certificate belongs there"
  elif ! grep -q -- '-----BEGIN CERTIFICATE-----' "$ca"; then
    lack "$ca" "holds no PEM certificate"
  fi
  for program in "${programs[@]}"; do
    file="$dir/kafka/$program.password"
    if [ ! -s "$file" ]; then
      lack "$file" "missing: the password of your Kafka's SCRAM user for $program"
    elif [ "$(grep -c '' "$file")" -gt 1 ]; then
      # The program drops one line ending: the rest would be part of the password.
      lack "$file" "holds more than one line; the password alone is wanted"
    elif [ -z "$(tr -d '\r\n' < "$file")" ]; then
      lack "$file" "holds an empty password"
    fi
  done
  if [ "$missing" = 1 ]; then
    echo "secrets.sh: kafka.yaml needs these files from your Kafka's operator (see its header)" >&2
    exit 1
  fi
  for program in "${programs[@]}"; do chmod 0644 "$dir/kafka/$program.password"; done
  chmod 0644 "$ca"
fi

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

for service in "${services[@]}"; do
  # host:port:database:user:password, the service's role owning its database
  # (initdb/01-databases.sh creates both from this file).
  made "$dir/$service.pgpass" eval 'echo "*:*:$service:$service:$(random 24)"'
done
made "$dir/postgres-password" random 24
for service in auth notify; do
  made "$dir/$service-secrets.key" eval 'head -c 32 /dev/urandom | base64'
done
# The card key: 32 random bytes are an X25519 private key. order.env follows from
# it, written again every run as nats-auth.conf is; the payment program itself
# derives the public key, reading the file as it will in its container.
made "$dir/payment-card.key" eval 'head -c 32 /dev/urandom | base64'
public=$(cd "$root" && env -u FOLIO_PAYMENT_CARD_KEY FOLIO_PAYMENT_CARD_KEY_FILE="$dir/payment-card.key" \
  "${payment[@]}" --card-public-key)
[ -n "$public" ] || { echo "secrets.sh: payment --card-public-key printed nothing" >&2; exit 1; }
(umask 077; echo "FOLIO_PAYMENT_CARD_PUBLIC_KEY=$public" > "$dir/order.env.tmp")
chmod 0644 "$dir/order.env.tmp"
mv "$dir/order.env.tmp" "$dir/order.env"
made "$dir/admin.env" eval 'printf "FOLIO_ADMIN_EMAIL=%s\nFOLIO_ADMIN_PASSWORD=%s\n" "${FOLIO_ADMIN_EMAIL:-admin@folio.local}" "$(random 18)"'

