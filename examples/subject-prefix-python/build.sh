#!/bin/sh
# Builds dist/subject_prefix_python.wasm with componentize-py, installed from requirements.txt.
# The WIT and the SDK are read from the repository, so the contract is never copied.
set -eu
cd "$(dirname "$0")"
mkdir -p dist
exec componentize-py -d ../../wit -w flowstep componentize app \
    -p . -p ../../plugin-sdk/python -o dist/subject_prefix_python.wasm
