#!/usr/bin/env bash
# The gamma sweep of docs/model-card.md: train each configs/gamma-sweep/*.yaml, export it (fp32: the sweep compares
# training objectives, not quantisation), and evaluate the benchmarks gamma acts on. Needs `csrm-guard data build
# --out data_build` first; about 20 minutes per value on a 2-core CPU. Results: runs/gamma-*/eval-*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
for config in "${@:-configs/gamma-sweep/gamma-0.yaml configs/gamma-sweep/gamma-0.1.yaml configs/gamma-sweep/gamma-0.3.yaml configs/gamma-sweep/gamma-1.0.yaml}"; do
  for one in $config; do
    run="runs/$(basename "$one" .yaml)"
    [ -f "$run/checkpoints/final.pt" ] || csrm-guard train --config "$one"
    [ -f "$run/bundle/manifest.json" ] || csrm-guard export --checkpoint "$run/checkpoints/final.pt" \
      --data data_build --out "$run/bundle" --fp32 --model-id "$(basename "$run")"
    for benchmark in strictness-dev pairs-dev configurable-dev; do
      [ -f "$run/eval-$benchmark.json" ] || csrm-guard eval --bundle "$run/bundle" --benchmark "$benchmark" \
        --data data_build --limit 500 --out "$run/eval-$benchmark.md" --img "$run/img" \
        --json "$run/eval-$benchmark.json"
    done
  done
done
