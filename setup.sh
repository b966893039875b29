#!/usr/bin/env bash
# Set up Socratext on a fresh machine of this project's kind (Debian, root, registries only).
# Idempotent and fast when everything is already there:
#   1. Debian packages: Tesseract with French + English data, fonts (synthetic receipts), Java, Maven.
#   2. The local stack's servers (Kafka broker jars, MinIO binary), via deploy/local/install.sh.
#   3. A virtual environment at .venv with the Python dependencies pinned by constraints.txt.
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '[setup] %s\n' "$*" >&2; }

# libtesseract-dev, libleptonica-dev, pkg-config, g++: tesserocr (the in-process OCR engine, 1.55x less
# CPU per receipt) is built against the system's Tesseract; its PyPI wheel bundles another Tesseract
# version that reads receipts worse (bench/results/ocr_backends_wheel.json).
APT_PACKAGES=(tesseract-ocr tesseract-ocr-fra tesseract-ocr-eng fonts-dejavu-core fonts-dejavu-extra
              fonts-liberation maven prometheus docker-compose
              libtesseract-dev libleptonica-dev pkg-config g++)
command -v java >/dev/null 2>&1 || APT_PACKAGES+=(default-jre-headless)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -f deploy/local/install.sh ]; then
  bash deploy/local/install.sh
fi

PY=${PYTHON:-python3}
stamp=.venv/.socratext-deps
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python dependencies into .venv (first time: a few minutes, torch is large)"
  .venv/bin/python -m pip install -q --upgrade "pip>=24"
  .venv/bin/python -m pip install -q --no-binary tesserocr -c constraints.txt -e ".[stream,train,dev,ppocr]"
  echo "$want" > "$stamp"
fi
# PP-OCR's int8 detector is derived from the wheel once (about 10 s), not on the first receipt read.
SOCRATEXT_OCR_BACKEND=ppocr .venv/bin/socratext ocr-models >/dev/null
log "ready: .venv/bin/socratext --help"
