#!/usr/bin/env bash
# install-deps.sh: install what ventral builds against, from Debian packages, and the Python
# packages its fixture scripts and converters use. Idempotent; safe to run again.
#   OpenBLAS (libopenblas-dev), stb_image (libstb-dev), zlib (zlib1g-dev), doctest (doctest-dev),
#   nlohmann/json (nlohmann-json3-dev, header only), and for the Python package's tests (python/:
#   never a dependency of the C++ engine) Debian's numpy, PyTorch (CPU) and pandas,
#   a C++17 compiler and make; clang + libFuzzer for `make fuzz` (optional).
# The CUDA toolkit, cuBLAS and cuDNN are expected in /usr/local/cuda (only for `make CUDA=1`).
set -euo pipefail

need=()
for pkg in build-essential pkg-config libopenblas-dev libopenblas-openmp-dev libstb-dev zlib1g-dev doctest-dev nlohmann-json3-dev python3 python3-numpy python3-torch python3-pandas; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "install-deps: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Python packages for the test fixtures' checks and the data converters (never linked into ventral).
if ! python3 -c "import numpy, h5py, netCDF4, PIL" 2>/dev/null; then
    echo "install-deps: installing numpy h5py netCDF4 Pillow (pip)"
    python3 -m pip install -q numpy h5py netCDF4 Pillow 2>/dev/null ||
        python3 -m pip install -q --break-system-packages numpy h5py netCDF4 Pillow
fi
echo "install-deps: ok"
