#!/usr/bin/env sh
# Build deploy/aws/package/ — otpgate[aws] and its dependencies as Lambda runs them
# (Python 3.12 on arm64, Amazon Linux 2023) — for `sam build` to pick up (CodeUri).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
rm -rf "$here/package" "$here/.dist"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$here/.dist" "$root"
wheel=$(ls "$here"/.dist/otpgate-*.whl)
"$python" -m pip install --quiet --target "$here/package" --implementation cp \
  --python-version 3.12 --only-binary=:all: --platform manylinux_2_34_aarch64 \
  --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 "$wheel[aws]"
echo "built $here/package"
