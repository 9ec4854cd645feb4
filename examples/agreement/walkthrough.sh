#!/usr/bin/env bash
# A data-sharing agreement from keys to the privacy receipts, command by command.
# Run from this folder: ./walkthrough.sh (uses `accord` from PATH, or $ACCORD).
# Everything it writes goes to ./work (deleted first).
set -euo pipefail
cd "$(dirname "$0")"
accord() { command "${ACCORD:-accord}" "$@"; }
rm -rf work && mkdir -p work/keys

echo "== 1. Identity keys: each hospital in its own node home, the coordinator in a file"
for hospital in hospital-a hospital-b hospital-c; do
  accord keys new "$hospital" --node-home "work/homes/$hospital" > /dev/null
done
accord keys new coordinator --out work/keys > /dev/null

echo "== 2. One party writes the terms (cautious defaults: secure aggregation, >= 3 parties)"
accord agreement init work/agreement.toml --id breast-2026 --title "Breast-cancer risk model" \
  --purpose cancer-research --coordinator coordinator=work/keys/coordinator.pub \
  --owner hospital-a=work/homes/hospital-a --owner hospital-b=work/homes/hospital-b \
  --owner hospital-c=work/homes/hospital-c

echo "== 3. Not in force until every party has signed"
accord agreement verify work/agreement.toml || echo "(exit $? as expected)"
accord agreement sign work/agreement.toml --key work/keys/coordinator.key
for hospital in hospital-a hospital-b hospital-c; do
  accord agreement sign work/agreement.toml --key "work/homes/$hospital"
done
accord agreement verify work/agreement.toml
accord agreement show work/agreement.toml

echo "== 4. The job runs; each node checks its own copy before every release"
accord run job.toml --out work/run --quiet

echo "== 5. Receipts, audit logs, and the heads the coordinator kept"
python3 -c "import json; r = json.load(open('work/run/receipts.json')); \
print({p: (v['agreement'], v['protection'], v['releases']) for p, v in r.items()})"
accord audit verify --node-home work/homes/hospital-a --against work/run/audit-heads.json
accord audit show --node-home work/homes/hospital-a --last 3

echo "== 6. A job that breaks a clause is refused (exit 3), naming the clause"
sed 's/mode = "secagg"/mode = "none"/; /max_dropout_fraction/d' job.toml > work/plain.toml
sed -i 's|work/|./|' work/plain.toml
(cd work && accord run plain.toml --out run-plain --quiet) || echo "(exit $? as expected)"

echo "== 7. hospital-b withdraws; its node stops and the others are told"
accord agreement revoke work/homes/hospital-b/agreement.toml --key work/homes/hospital-b \
  --reason "ethics approval withdrawn"
accord run job.toml --out work/run-2 --quiet || echo "(exit $? as expected)"
accord agreement verify work/homes/hospital-c/agreement.toml || echo "(exit $? as expected)"
