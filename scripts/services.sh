#!/usr/bin/env bash
# Make sure PostgreSQL and Redis run on 127.0.0.1, installing them from Debian when absent,
# and that Debian's headless Chromium is there for the report screenshot tests.
set -euo pipefail
need_apt=()
command -v pg_ctlcluster >/dev/null || need_apt+=(postgresql)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v chromium >/dev/null || need_apt+=(chromium)
fresh_postgres=false
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    [[ " ${need_apt[*]} " == *" postgresql "* ]] && fresh_postgres=true
fi
if $fresh_postgres; then
    # A new Debian cluster: let the tests connect over 127.0.0.1 without a password, as on CI.
    hba="/etc/postgresql/$(ls /etc/postgresql | head -1)/main/pg_hba.conf"
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if $fresh_postgres; then
    # The package may have started the cluster before the trust line went in: reload it.
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main reload || true
    su postgres -c "psql -qc 'CREATE DATABASE test'" || true
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
