#!/usr/bin/env bash
# Prints the Secrets Folio's Kubernetes manifests read, for `kubectl apply -f -`:
#   folio-<program>  nats.nk (the program's NATS nkey seed); for every service
#                    database-url (when given); for auth and notify secrets.key
#                    (the key that seals their secrets at rest); for auth
#                    admin-email and admin-password (when given); for payment
#                    card.key (the X25519 private key card data is sealed to); for
#                    order payment-card-public-key (its public half, which
#                    `payment --card-public-key` derives)
#   folio-nats       auth.conf (the server's authorization block for those nkeys)
#
# The seeds and keys are made once and kept in FOLIO_SECRETS_DIR (default
# ./folio-secrets, created 0700): run it again and it prints the same ones; a new
# secrets key would leave the sealed data unreadable, and a new card key the
# card data of the orders in flight. Keep that directory as you keep the
# database's backups.
#
# Settings (environment): FOLIO_BOOK_DATABASE_URL, FOLIO_AUTHOR_DATABASE_URL,
# FOLIO_AUTH_DATABASE_URL, FOLIO_NOTIFY_DATABASE_URL,
# FOLIO_INVENTORY_DATABASE_URL, FOLIO_PAYMENT_DATABASE_URL,
# FOLIO_ORDER_DATABASE_URL (required by the prod overlay), FOLIO_ADMIN_EMAIL and
# FOLIO_ADMIN_PASSWORD (the first admin account), FOLIO_NAMESPACE (default
# folio), FOLIO (the folio command; default: go run ./cmd/folio from the
# repository), FOLIO_PAYMENT_COMMAND (the payment command; default: go run
# ./cmd/payment from the repository).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${FOLIO_SECRETS_DIR:-./folio-secrets}"
ns="${FOLIO_NAMESPACE:-folio}"
folio=(${FOLIO:-go run "$root/cmd/folio"})
payment=(${FOLIO_PAYMENT_COMMAND:-go run "$root/cmd/payment"})
umask 077
mkdir -p "$dir/nats"

# One nkey seed per program (kept if present) and the block that admits them.
"${folio[@]}" nats --keys-dir "$dir/nats" > "$dir/nats/auth.conf"
for service in auth notify; do
  [ -s "$dir/$service-secrets.key" ] || head -c 32 /dev/urandom | base64 > "$dir/$service-secrets.key"
done
# The card key (32 random bytes are an X25519 private key) and its public half,
# derived by the payment program itself from the file, as it will read it.
[ -s "$dir/payment-card.key" ] || head -c 32 /dev/urandom | base64 > "$dir/payment-card.key"
card_public=$(cd "$root" && env -u FOLIO_PAYMENT_CARD_KEY FOLIO_PAYMENT_CARD_KEY_FILE="$dir/payment-card.key" \
  "${payment[@]}" --card-public-key)
[ -n "$card_public" ] || { echo "secrets.sh: payment --card-public-key printed nothing" >&2; exit 1; }

secret() { # name, then kubectl create secret generic arguments
  local name=$1; shift
  echo "---"
  kubectl create secret generic "$name" --namespace "$ns" --dry-run=client -o yaml "$@"
}
database() { # service: the --from-literal of its database URL, if given
  local var="FOLIO_${1^^}_DATABASE_URL"
  [ -z "${!var:-}" ] || echo "--from-literal=database-url=${!var}"
}

secret folio-nats --from-file=auth.conf="$dir/nats/auth.conf"
secret folio-gateway --from-file=nats.nk="$dir/nats/gateway.nk"
secret folio-book --from-file=nats.nk="$dir/nats/book.nk" $(database book)
secret folio-author --from-file=nats.nk="$dir/nats/author.nk" $(database author)
admin=()
[ -z "${FOLIO_ADMIN_EMAIL:-}" ] || admin=(--from-literal=admin-email="$FOLIO_ADMIN_EMAIL" --from-literal=admin-password="${FOLIO_ADMIN_PASSWORD:?FOLIO_ADMIN_PASSWORD goes with FOLIO_ADMIN_EMAIL}")
secret folio-auth --from-file=nats.nk="$dir/nats/auth.nk" --from-file=secrets.key="$dir/auth-secrets.key" \
  $(database auth) "${admin[@]}"
secret folio-notify --from-file=nats.nk="$dir/nats/notify.nk" --from-file=secrets.key="$dir/notify-secrets.key" \
  $(database notify)
secret folio-inventory --from-file=nats.nk="$dir/nats/inventory.nk" $(database inventory)
secret folio-payment --from-file=nats.nk="$dir/nats/payment.nk" --from-file=card.key="$dir/payment-card.key" \
  $(database payment)
secret folio-order --from-file=nats.nk="$dir/nats/order.nk" --from-literal=payment-card-public-key="$card_public" \
  $(database order)
