#!/usr/bin/env sh
# Writes the secrets compose.yaml reads, once: a random PostgreSQL password,
# the database URL holding it, and a key-encryption key that seals the
# hub's signing keys in the database. An existing file is never
# overwritten (a lost key-encryption key loses the signing keys).
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 700 secrets
if [ ! -e secrets/postgres_password ]; then
  openssl rand -hex 24 > secrets/postgres_password
fi
if [ ! -e secrets/database_url ]; then
  printf 'postgres://cityhub:%s@postgres:5432/cityhub\n' "$(cat secrets/postgres_password)" > secrets/database_url
fi
if [ ! -e secrets/kek ]; then
  openssl rand -hex 32 > secrets/kek
fi
# Compose mounts these files into the containers as they are on disk: the
# hub (uid 10001) and PostgreSQL must be able to read them; the directory,
# mode 0700, keeps other users of this machine out.
chmod 644 secrets/postgres_password secrets/database_url secrets/kek
echo "secrets in $(pwd)/secrets; back up secrets/kek apart from the database"
