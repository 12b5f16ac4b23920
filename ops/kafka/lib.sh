# Shared by start.sh and init.sh (sourced, not run).

# Fail with one line unless the variable named $1 holds a real secret: set, not the
# placeholder from ops/env.example, and only characters that survive JAAS quoting and the
# SCRAM credential syntax (generate one with: openssl rand -hex 24).
require_secret() {
  local name=$1 value=${!1:-}
  if [[ -z $value ]]; then
    echo "gridshift: $name is not set; copy ops/env.example to .env and fill it in" >&2
    exit 1
  fi
  if [[ $value == change-me* ]]; then
    echo "gridshift: $name still holds the placeholder from ops/env.example" >&2
    exit 1
  fi
  if [[ ! $value =~ ^[A-Za-z0-9._~-]{16,}$ ]]; then
    echo "gridshift: $name must be 16+ characters of A-Z a-z 0-9 . _ ~ - (openssl rand -hex 24)" >&2
    exit 1
  fi
}

# Write the admin's client configuration (SASL/SCRAM over INTERNAL) to $1, readable by us only.
write_admin_config() {
  (
    umask 077
    cat >"$1" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
PROPERTIES
  )
}
