#!/usr/bin/env bash
# Entry point of the kafka service: render the broker configuration (ops/kafka/server.properties
# plus the JAAS lines holding the admin password from the environment, in a private file),
# format the storage once with the admin's SCRAM credential (kafka-storage format --add-scram:
# the broker needs it before it can authenticate anyone), then run the broker.
# The other users are created, and rotated, by the topics service (ops/kafka/init.sh).
set -euo pipefail
here=$(dirname "$0")
. "$here/lib.sh"
require_secret KAFKA_ADMIN_PASSWORD
: "${CLUSTER_ID:?CLUSTER_ID is not set}"

conf=/tmp/gridshift-kafka
mkdir -p "$conf"
chmod 700 "$conf"
scram="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$KAFKA_ADMIN_PASSWORD\";"
plain="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"$KAFKA_ADMIN_PASSWORD\" user_admin=\"$KAFKA_ADMIN_PASSWORD\";"
(
  umask 077
  cat "$here/server.properties"
  echo "listener.name.internal.scram-sha-512.sasl.jaas.config=$scram"
  echo "listener.name.host.scram-sha-512.sasl.jaas.config=$scram"
  echo "listener.name.controller.plain.sasl.jaas.config=$plain"
) >"$conf/server.properties"
write_admin_config "$conf/admin.properties"  # for the health check and `docker compose exec`

/opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id "$CLUSTER_ID" \
  --config "$conf/server.properties" \
  --add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]"
exec /opt/kafka/bin/kafka-server-start.sh "$conf/server.properties"
