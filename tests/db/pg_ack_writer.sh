#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# pg_ack_writer.sh SOCKDIR ROUND ACKFILE: commits INSERT INTO acked VALUES
# (ROUND, i) for i = 1, 2, ... one transaction (one psql session) each, and
# appends i to ACKFILE only after psql reported the COMMIT as done. Runs
# until a commit fails (the crash) or it is killed. The ack file is on the
# local disk: only this process dies, so every line written is kept.
set -euo pipefail
[[ $# -eq 3 ]] || { echo "usage: $0 SOCKDIR ROUND ACKFILE" >&2; exit 2; }
sock=$1 round=$2 ack=$3 i=1
: >"$ack"
while psql -X -q -v ON_ERROR_STOP=1 -h "$sock" -p 5432 -U postgres -d bench \
    -c "INSERT INTO acked VALUES ($round, $i, now())" >/dev/null 2>&1; do
  echo "$i" >>"$ack"
  i=$((i + 1))
done
echo "pg_ack_writer: round $round stopped after $((i - 1)) acknowledged commits"
