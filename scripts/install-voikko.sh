#!/bin/sh
# Voikko (Finnish spell-checker and analyser) for the test that checks every Finnish word form the
# story grammar can write. Debian/Ubuntu: libvoikko1 + voikko-fi; the Python binding is the PyPI
# package libvoikko (dev extra). Elsewhere the test is skipped with a message saying what to install.
set -e
PYTHON="${1:-python3}"
if "$PYTHON" -c "import libvoikko; libvoikko.Voikko('fi')" 2>/dev/null; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
    if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
        $SUDO apt-get install -y -qq libvoikko1 voikko-fi >/dev/null 2>&1 || {
            $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y -qq libvoikko1 voikko-fi >/dev/null 2>&1
        } || echo "warning: could not install libvoikko1 voikko-fi; the Voikko test will be skipped"
        exit 0
    fi
fi
echo "warning: Voikko is not installed (Debian: apt-get install libvoikko1 voikko-fi); the Voikko test will be skipped"
