#!/usr/bin/env bash
# install-deps.sh: install what ventral builds against, from Debian packages, and the Python
# packages its fixture scripts and converters use. Idempotent; safe to run again.
#   OpenBLAS (libopenblas-dev), stb_image (libstb-dev), zlib (zlib1g-dev), doctest (doctest-dev),
#   nlohmann/json (nlohmann-json3-dev, header only), OpenMPI (libopenmpi-dev, openmpi-bin: `make MPI=1`
#   and the data-parallel tests), and for the Python package's tests (python/:
#   never a dependency of the C++ engine) Debian's numpy, PyTorch (CPU), pandas, xarray and the
#   rest of what brainscore-vision imports (itself from PyPI, below),
#   a C++17 compiler and make; clang + libFuzzer for `make fuzz` (optional).
# The CUDA toolkit, cuBLAS and cuDNN are expected in /usr/local/cuda (only for `make CUDA=1`).
set -euo pipefail

need=()
for pkg in build-essential pkg-config libopenblas-dev libopenblas-openmp-dev libstb-dev zlib1g-dev doctest-dev nlohmann-json3-dev libopenmpi-dev openmpi-bin python3 python3-pip python3-numpy python3-torch python3-pandas python3-xarray python3-boto3 python3-tqdm python3-netcdf4 python3-packaging python3-pil python3-h5py; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "install-deps: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Python packages for the test fixtures' checks and the data converters (never linked into ventral):
# Debian's above serve Debian's python3; pip only where python3 is another one (pyenv, a venv).
if ! python3 -c "import numpy, h5py, netCDF4, PIL" 2>/dev/null; then
    echo "install-deps: installing numpy h5py netCDF4 Pillow (pip)"
    python3 -m pip install -q numpy h5py netCDF4 Pillow 2>/dev/null ||
        python3 -m pip install -q --break-system-packages numpy h5py netCDF4 Pillow
fi
# brainscore-vision for the Brain-Score adapter's test (python/ventral/brainscore.py), with
# brainscore-core and result_caching, without their own dependencies (PyPI's would pull a
# second PyTorch; Debian's numpy, pandas, xarray, boto3, netCDF4, tqdm above serve): into
# third_party/pydeps (git ignores it), which the tests put on PYTHONPATH for Debian's python3.
pydeps="$(cd "$(dirname "$0")" && pwd)/pydeps"
if ! PYTHONPATH="$pydeps" /usr/bin/python3 -c "import brainscore_vision.model_interface" 2>/dev/null; then
    echo "install-deps: installing brainscore-vision into $pydeps (pip, --no-deps)"
    /usr/bin/python3 -m pip install -q --no-deps --upgrade --target "$pydeps" \
        brainscore-vision==2.4.2 brainscore-core==2.5.0 result_caching==0.5
fi
echo "install-deps: ok"
