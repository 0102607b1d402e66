#!/bin/sh
# Entry point of the `train` image: train a recipe on the dataset mounted at /datasets, then export the best
# checkpoint into /app/models/<name> (the host's ./models), where the service finds it on its next start.
#   docker compose --profile train run --rm train [extra `reid train` flags, e.g. --epochs 60]
set -eu
: "${TRAIN_RECIPE:?set TRAIN_RECIPE (see: reid recipes)}"
: "${TRAIN_DATASET:?set TRAIN_DATASET (see: reid datasets)}"
name="${MODEL_NAME:-${TRAIN_RECIPE}-${TRAIN_DATASET}}"
reid train --recipe "$TRAIN_RECIPE" --dataset "$TRAIN_DATASET" --root /datasets --output "/app/runs/$name" "$@"
reid export --checkpoint "/app/runs/$name/checkpoint.pt" --output "/app/models/$name"
echo "exported /app/models/$name; restart the service with REID_MODEL=$name to serve it"
