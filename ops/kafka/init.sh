#!/usr/bin/env bash
# The one-shot topics service, run on every `docker compose up` (each step is idempotent); the
# workers start only once it has succeeded:
#   0. every secret of .env is real (no placeholder; the two HTTP tokens differ);
#   1. SCRAM users for workers, sources, readers, site agents and VENs, with the passwords from .env (changing a
#      password there and re-running this is how it is rotated: docs/SECURITY.md);
#   2. the contract's topics;
#   3. the ACLs of ops/kafka/acls.txt.
set -euo pipefail
here=$(dirname "$0")
. "$here/lib.sh"
: "${BOOTSTRAP:?}" "${PARTITIONS:?}" "${REPLICATION:?}" "${TOPICS:?}"
for name in KAFKA_ADMIN_PASSWORD KAFKA_WORKER_PASSWORD KAFKA_SOURCE_PASSWORD \
  KAFKA_READER_PASSWORD KAFKA_AGENT_PASSWORD KAFKA_VEN_PASSWORD HTTP_WRITE_TOKEN HTTP_READ_TOKEN; do
  require_secret "$name"
done
if [[ $HTTP_WRITE_TOKEN == "$HTTP_READ_TOKEN" ]]; then
  echo "gridshift: HTTP_READ_TOKEN must differ from HTTP_WRITE_TOKEN (it would write)" >&2
  exit 1
fi
bin=/opt/kafka/bin
admin=$(mktemp)
trap 'rm -f "$admin"' EXIT
write_admin_config "$admin"

for user in gridshift-worker:KAFKA_WORKER_PASSWORD gridshift-source:KAFKA_SOURCE_PASSWORD \
  gridshift-reader:KAFKA_READER_PASSWORD gridshift-agent:KAFKA_AGENT_PASSWORD \
  gridshift-ven:KAFKA_VEN_PASSWORD; do
  variable=${user#*:}
  "$bin/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$admin" --alter \
    --entity-type users --entity-name "${user%%:*}" \
    --add-config "SCRAM-SHA-512=[password=${!variable}]"
done

for topic in $TOPICS; do
  "$bin/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$admin" --create \
    --if-not-exists --topic "$topic" --partitions "$PARTITIONS" \
    --replication-factor "$REPLICATION"
done

while read -r principal operations type pattern names; do
  [[ -z ${principal:-} || $principal == \#* ]] && continue
  args=(--allow-principal "$principal" --resource-pattern-type "$pattern")
  for operation in ${operations//,/ }; do args+=(--operation "$operation"); done
  for name in ${names//,/ }; do args+=("--$type" "$name"); done
  "$bin/kafka-acls.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$admin" --add "${args[@]}"
done <"$here/acls.txt"

"$bin/kafka-acls.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$admin" --list
"$bin/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$admin" --list
