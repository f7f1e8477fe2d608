#!/usr/bin/env bash
# The demo's PostgreSQL writer: keeps the `payments` table changing (a new pending
# payment every second; the one before it settled, now and then one refunded and
# deleted). Usage: demo_pg_writer.sh URL (the table must exist: scripts/demo makes it).
set -euo pipefail
url="$1"
psql=(/usr/lib/postgresql/15/bin/psql "$url" -qAt -v ON_ERROR_STOP=1)
customers=(ada grace linus margaret ken barbara)
i=0
while true; do
  i=$((i + 1))
  c="${customers[$((i % ${#customers[@]}))]}"
  "${psql[@]}" -c "BEGIN;
    INSERT INTO payments (customer, amount) VALUES ('$c', round((random() * 200)::numeric, 2));
    UPDATE payments SET status = 'paid', updated_at = now()
      WHERE id = (SELECT max(id) - 1 FROM payments) AND status = 'pending';
    COMMIT;"
  if ((i % 7 == 0)); then
    "${psql[@]}" -c "DELETE FROM payments WHERE id = (SELECT min(id) FROM payments WHERE status = 'paid')"
  fi
  sleep 1
done
