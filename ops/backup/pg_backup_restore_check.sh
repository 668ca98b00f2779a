#!/usr/bin/env bash
# Backup and restore of the platform's PostgreSQL database, tested end to end (README, Backups):
#   1. a scratch database is migrated and given rows (users, paper accounts with ledger rows,
#      audit events in several hash chains);
#   2. it is dumped with `pg_dump -Fc` (the production procedure's format);
#   3. the dump is restored with `pg_restore` into a second, fresh database;
#   4. the row count of every table must match between the two, and `manage.py audit_verify`
#      must report the restored audit trail intact (its hash chains survived the round trip),
#      also against the chain heads exported from the original.
# Both scratch databases are dropped at the end, whatever happened.
#
# Usage: DATABASE_URL=postgres://user[:password]@host:port/any ops/backup/pg_backup_restore_check.sh
# The role needs CREATEDB. Uses .venv/bin/python and the PostgreSQL client tools on PATH.
set -euo pipefail

cd "$(dirname "$0")/../.." || exit 2
: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL server (postgres://user@host:port/db)}"
PYTHON=${PYTHON:-.venv/bin/python}
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-tradingplatform.settings.test}

# The server part of the URL, and libpq variables for the client tools.
server_url=${DATABASE_URL%/*}
eval "$("$PYTHON" - "$DATABASE_URL" <<'PY'
import shlex, sys
from urllib.parse import unquote, urlsplit
url = urlsplit(sys.argv[1])
for name, value in (("PGHOST", url.hostname), ("PGPORT", url.port), ("PGUSER", url.username), ("PGPASSWORD", url.password)):
    if value:
        print(f"export {name}={shlex.quote(unquote(str(value)))}")
PY
)"

suffix="$(date +%s)_$$"
SOURCE="tp_backup_src_${suffix}"
TARGET="tp_backup_dst_${suffix}"
WORK=$(mktemp -d)
DUMP="$WORK/platform.dump"

cleanup() {
    dropdb --if-exists "$SOURCE" 2>/dev/null || true
    dropdb --if-exists "$TARGET" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

count_rows() {
    psql -X -w -d "$1" -Atq -F ' ' -c "
        SELECT table_name,
               (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM public.%I', table_name),
                                                   false, true, '')))[1]::text
        FROM information_schema.tables
        WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
        ORDER BY table_name"
}

echo "== creating and migrating $SOURCE"
createdb "$SOURCE"
DATABASE_URL="$server_url/$SOURCE" "$PYTHON" manage.py migrate --noinput -v 0

echo "== adding rows"
DATABASE_URL="$server_url/$SOURCE" "$PYTHON" manage.py shell -c "
from decimal import Decimal
from django.contrib.auth import get_user_model
from apps.accounts.services import account_connect_paper
from apps.audit.services import audit_event, audit_record, audit_record_many

users = [get_user_model().objects.create_user(email=f'backup{n}@example.com', password='backup-check-1') for n in range(3)]
for n, user in enumerate(users):
    account_connect_paper(owner=user, name=f'Paper {n}', balances={'USDT': Decimal('1000')})
    audit_record(action='user.login', actor=user, details={'n': n, 'price': 1.5})
audit_record_many([audit_event(action='order.fill', user_id=users[i % 3].pk, details={'i': i}) for i in range(30)])
audit_record(action='admin.changed', details={'object': 'backup check'})
"
DATABASE_URL="$server_url/$SOURCE" "$PYTHON" manage.py audit_verify --export "$WORK/heads.json"

echo "== pg_dump -Fc $SOURCE"
pg_dump -w -Fc --no-owner -d "$SOURCE" -f "$DUMP"
ls -l "$DUMP"

echo "== pg_restore into a fresh $TARGET"
createdb "$TARGET"
pg_restore -w --no-owner --exit-on-error -d "$TARGET" "$DUMP"

echo "== comparing row counts"
count_rows "$SOURCE" >"$WORK/source.counts"
count_rows "$TARGET" >"$WORK/target.counts"
if ! diff -u "$WORK/source.counts" "$WORK/target.counts"; then
    echo "FAILED: the restored database's row counts differ from the original's" >&2
    exit 1
fi
tables=$(wc -l <"$WORK/source.counts")
for table in users_user audit_event accounts_tradingaccount; do
    grep "^$table " "$WORK/target.counts" || { echo "FAILED: no $table in the restored copy" >&2; exit 1; }
done
echo "row counts match in all $tables tables"

echo "== audit_verify on the restored copy"
DATABASE_URL="$server_url/$TARGET" "$PYTHON" manage.py audit_verify --heads "$WORK/heads.json"
DATABASE_URL="$server_url/$TARGET" "$PYTHON" manage.py migrate --check --noinput -v 0

echo "backup/restore check passed"
