#!/usr/bin/env bash
# The gamma sweep of docs/model-card.md: train each configs/gamma-sweep/*.yaml, export it (fp32: the sweep compares
# training objectives, not quantisation), and evaluate it. Needs `csrm-guard data build
# --out data_build` first; about 15 minutes per run on a 2-core CPU. Results: runs/gamma-*/eval-*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then
  configs=(configs/gamma-sweep/gamma-0.yaml configs/gamma-sweep/gamma-0.1.yaml configs/gamma-sweep/gamma-0.3.yaml
    configs/gamma-sweep/gamma-1.0.yaml configs/gamma-sweep/gamma-0.1-seed14.yaml)
fi
for config in "${configs[@]}"; do
  run="runs/$(basename "$config" .yaml)"
  [ -f "$run/checkpoints/final.pt" ] || csrm-guard train --config "$config"
  [ -f "$run/bundle/manifest.json" ] || csrm-guard export --checkpoint "$run/checkpoints/final.pt" \
    --data data_build --out "$run/bundle" --fp32 --model-id "$(basename "$run")"
  for benchmark in strictness-dev pairs-dev configurable-dev beavertails-dev handwritten rules-dev; do
    [ -f "$run/eval-$benchmark.json" ] || csrm-guard eval --bundle "$run/bundle" --benchmark "$benchmark" \
      --data data_build --limit 500 --out "$run/eval-$benchmark.md" --img "$run/img" \
      --json "$run/eval-$benchmark.json"
  done
done
