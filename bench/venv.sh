#!/usr/bin/env bash
# Create or refresh .bench-venv: the project's runtime dependencies (pip install -e .) plus the official
# Alipay SDK, which is a benchmark peer only and never goes into .venv or pyproject's dependencies, and moto
# (in-process DynamoDB/SQS/Secrets Manager for the message gateway figure) with cfn-lint, whose YAML loader
# lifelink_local.provision uses to read template.yaml.
# Usage: bench/venv.sh PYTHON   (PYTHON: the interpreter the Makefile detected, python3.13 preferred)
set -euo pipefail
python="${1:-}"
venv=.bench-venv
stamp="$venv/.installed"
if [[ -z "$python" ]]; then
  echo "bench: need Python >= 3.12 (3.13 preferred)" >&2
  exit 1
fi
if [[ -f "$stamp" && "$stamp" -nt pyproject.toml && "$stamp" -nt bench/venv.sh ]]; then
  exit 0
fi
echo "bench: preparing $venv with $python (first run only, about a minute)"
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
log="$venv/install.log"
if ! { "$venv/bin/python" -m pip install --quiet --upgrade pip \
       && "$venv/bin/python" -m pip install --quiet -e . alipay-sdk-python \
         "moto[dynamodb,sqs,secretsmanager]>=5.1" "cfn-lint>=1.54"; } >"$log" 2>&1; then
  echo "bench: installing into $venv failed; see $log" >&2
  tail -20 "$log" >&2
  exit 1
fi
touch "$stamp"
