#!/usr/bin/env bash
# Small hyper-parameter sweep for SASRec (full cross-entropy) on Amazon Beauty, selected on the
# valid split. Runs the configs in parallel on one machine (meant for a GPU box; on a CPU set
# ACCEL=cpu and expect hours). Usage: benchmarks/beauty_sweep.sh DATA_FILE OUT_DIR [ACCEL]
# DATA_FILE is the S3-Rec Beauty.txt (or sequences.tsv); results go to OUT_DIR/sweep.json.
set -u
data=$1; out=$2; accel=${3:-gpu}
py=${PYTHON:-python3}
mkdir -p "$out"
common=(--set data.name=null --set data.format=s3rec --set "data.path=$data"
        --set data.min_user_interactions=0 --set data.min_item_interactions=0
        --set data.cache_dir="$out/cache" --set train.progress=false --set train.patience=${PATIENCE:-20}
        --set train.epochs=300 --set train.trainer.accelerator=$accel)
# one config per line of the sweep file: NAME key=value key=value ...
sweep_file=${SWEEP_FILE:-benchmarks/beauty_sweep.txt}
# prepare once so the parallel runs share the cache
$py -m rankpref.cli prepare "${common[@]}" > "$out/prepare.log" 2>&1
while read -r name rest; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  sets=()
  for kv in $rest; do sets+=(--set "$kv"); done
  $py -m rankpref.cli fit "${common[@]}" "${sets[@]}" --out "$out/runs/$name" \
    > "$out/$name.log" 2>&1 &
done < "$sweep_file"
wait
$py - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = {}
for run in sorted((out / "runs").iterdir()):
    m = run / "model" / "metrics.json"
    if m.exists():
        d = json.loads(m.read_text())
        rows[run.name] = {"valid_ndcg@10": d["valid"]["ndcg@10"], "test_ndcg@10": d["test"]["ndcg@10"],
                          "valid_recall@10": d["valid"]["recall@10"], "test_recall@10": d["test"]["recall@10"],
                          "best_epoch": d["best_epoch"], "epochs_run": d["epochs_run"],
                          "seconds_per_epoch": d["seconds_per_epoch"]}
    else:
        rows[run.name] = {"error": "no metrics (see its log)"}
(out / "sweep.json").write_text(json.dumps(rows, indent=2))
print(json.dumps(rows, indent=2))
PY
