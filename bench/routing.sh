#!/usr/bin/env bash
# Every row of bench/ROUTING.md, in order: run from the repository root with the project installed
# (`make install`); ../shared/datasets holds CLINC150 and Banking77. About 15 minutes on 2 cores.
# Usage: bash bench/routing.sh [DATA_DIR]   (default ../shared/datasets)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/datasets}"
SY="${SWITCHYARD:-.venv/bin/switchyard}"
run() { echo "+ switchyard eval-router $*" >&2; "$SY" eval-router "$@" --out bench/results >/dev/null; }

run "$DATA"/clinc150/val.jsonl --label-field domain --classifier semantic
run "$DATA"/clinc150/val.jsonl --label-field domain --classifier semantic --fit
run "$DATA"/clinc150/val.jsonl --label-field domain --classifier semantic --max-examples 5 --confidence-threshold 0.0 --head linear
run "$DATA"/clinc150/val.jsonl --label-field domain --classifier semantic --max-examples 5 --confidence-threshold 0.0 --head similarity
run "$DATA"/clinc150/val.jsonl --label-field domain --classifier lexical
run "$DATA"/clinc150/val.jsonl --label-field domain --classifier lexical --fit
run "$DATA"/clinc150/val.jsonl --label-field domain --classifier lexical --max-examples 5 --confidence-threshold 0.0 --head linear
run "$DATA"/clinc150/val.jsonl --label-field domain --classifier lexical --max-examples 5 --confidence-threshold 0.0 --head similarity
run "$DATA"/banking77/train.jsonl --label-field intent --classifier semantic --holdout 0.2
run "$DATA"/banking77/train.jsonl --label-field intent --classifier semantic --holdout 0.2 --fit
run "$DATA"/banking77/train.jsonl --label-field intent --classifier semantic --holdout 0.2 --max-examples 5 --head linear
run "$DATA"/banking77/train.jsonl --label-field intent --classifier semantic --holdout 0.2 --max-examples 5 --head similarity
run "$DATA"/banking77/train.jsonl --label-field intent --classifier semantic --holdout 0.2 --precision float32
run "$DATA"/banking77/train.jsonl --label-field intent --classifier semantic --holdout 0.2 --seed 1
run "$DATA"/banking77/train.jsonl --label-field intent --classifier semantic --holdout 0.2 --seed 2
run "$DATA"/banking77/train.jsonl --label-field intent --classifier semantic --holdout 0.2 --seed 3
run "$DATA"/banking77/train.jsonl --label-field intent --classifier semantic --holdout 0.2 --seed 4
run "$DATA"/banking77/train.jsonl --label-field intent --classifier lexical --holdout 0.2
run "$DATA"/banking77/train.jsonl --label-field intent --classifier lexical --holdout 0.2 --fit
run "$DATA"/banking77/train.jsonl --label-field intent --classifier lexical --holdout 0.2 --max-examples 5 --head linear
run "$DATA"/banking77/train.jsonl --label-field intent --classifier lexical --holdout 0.2 --max-examples 5 --head similarity
run "$DATA"/banking77/train.jsonl --label-field intent --classifier lexical --holdout 0.2 --seed 1
run "$DATA"/banking77/train.jsonl --label-field intent --classifier lexical --holdout 0.2 --seed 2
run "$DATA"/banking77/train.jsonl --label-field intent --classifier lexical --holdout 0.2 --seed 3
run "$DATA"/banking77/train.jsonl --label-field intent --classifier lexical --holdout 0.2 --seed 4
