#!/usr/bin/env bash
# Installs the Debian 12 packages ote-c needs, and only those that are missing.
# Idempotent and quiet when everything is present. Run as root (or with sudo available).
#   install-deps.sh          build + run dependencies
#   install-deps.sh --test   also what the test suite runs: the Python reference tools (torch,
#                            sklearn, onnx's checker) and clang-14 + libFuzzer for the fuzz harnesses
# (libonnx-dev is a build dependency only for its onnx.proto, which protoc-c compiles to C.)
set -euo pipefail
pkgs=(build-essential cmake pkg-config libdnnl-dev libopencv-core-dev libopencv-imgproc-dev
      libopencv-imgcodecs-dev libopencv-dnn-dev libyaml-dev libcjson-dev libgsl-dev libnlopt-dev libplplot-dev plplot-driver-cairo
      libonnx-dev protobuf-c-compiler libprotobuf-c-dev libopenmpi-dev openmpi-bin)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(python3 python3-numpy python3-torch python3-sklearn python3-onnx libjemalloc2 clang-14 libfuzzer-14-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
