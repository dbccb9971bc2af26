#!/usr/bin/env bash
# Installs what is missing, builds ote-c and runs the main job on built-in demo data.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/scripts/build.sh build
./build/ote --version
