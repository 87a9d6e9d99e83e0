#!/bin/sh
# Remake the quicklooks the README shows, with satconv's own commands:
#   sh docs/make_quicklooks.sh            (from the project folder, after `make install`)
# SATCONV names the command (default .venv/bin/satconv); SATCONV_TEST_DATA the reference data.
set -e
cd "$(dirname "$0")/.."
SATCONV=${SATCONV:-.venv/bin/satconv}
DATA=${SATCONV_TEST_DATA:-../shared/data}
CONFIG=configs/landsat-gaussian.yaml
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

$SATCONV run sample_data/sample_scene.tif -c $CONFIG --out-dir "$work" -q
$SATCONV preview "$work/sample_scene.satconv.tif" -o docs/sample_scene.quicklook.png \
    --size 270 --overwrite
$SATCONV run "$DATA/RGB.byte.tif" -c $CONFIG --out-dir "$work" -q
$SATCONV preview "$work/RGB.byte.satconv.tif" -o docs/RGB.byte.quicklook.png \
    --size 270 --overwrite
