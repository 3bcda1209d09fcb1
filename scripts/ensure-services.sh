#!/usr/bin/env bash
# Make sure what the suite needs is here: PostgreSQL and Redis answering on 127.0.0.1, Debian's chromium,
# and a PostgreSQL role that may create databases (TOLLWAY_TEST_POSTGRES_URL, which `make test` passes on).
# Works on a stock Debian/Ubuntu server (peer auth on the socket, passwords on TCP) and on trust setups.
set -euo pipefail

TEST_ROLE=${TOLLWAY_TEST_ROLE:-tollway_test}

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! command -v pg_isready >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "installing postgresql and redis-server from Debian's packages" >&2
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql redis-server >/dev/null
fi

# The browser tests drive Debian's chromium (no browser download).
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium from Debian's packages" >&2
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
fi

if ! pg_up; then
  echo "starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! redis_up; then
  echo "starting Redis" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi

up=0
for _ in $(seq 1 50); do
  if pg_up && redis_up; then
    up=1
    break
  fi
  sleep 0.2
done
if [ "$up" != 1 ]; then
  pg_up || echo "PostgreSQL is not answering on 127.0.0.1:5432" >&2
  redis_up || echo "Redis is not answering on 127.0.0.1:6379" >&2
  exit 1
fi

# The test role and its database: as the postgres superuser over the socket (peer auth, as root), else over
# TCP where the server trusts local connections.
psql_admin() {
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 && runuser -u postgres -- psql -d postgres -qtAc 'SELECT 1' >/dev/null 2>&1; then
    runuser -u postgres -- psql -d postgres -v ON_ERROR_STOP=1 -qtA "$@"
  else
    psql -w -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"
  fi
}
if ! PGPASSWORD=$TEST_ROLE psql -w -h 127.0.0.1 -U "$TEST_ROLE" -d "$TEST_ROLE" -qtAc 'SELECT 1' >/dev/null 2>&1; then
  echo "creating the PostgreSQL role and database $TEST_ROLE for the tests" >&2
  if [ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$TEST_ROLE'")" ]; then
    psql_admin -c "CREATE ROLE $TEST_ROLE LOGIN CREATEDB PASSWORD '$TEST_ROLE'"
  else
    psql_admin -c "ALTER ROLE $TEST_ROLE LOGIN CREATEDB PASSWORD '$TEST_ROLE'"
  fi
  if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$TEST_ROLE'")" ]; then
    psql_admin -c "CREATE DATABASE $TEST_ROLE OWNER $TEST_ROLE"
  fi
fi
