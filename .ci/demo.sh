#!/usr/bin/env bash
# `make demo`: the main job end to end on the embedded default — a local IM 2.0.0 on its simulated (Dummy)
# cloud, inside a loopback-only network namespace. Uses a throwaway state directory unless PROVISION_HOME is set.
set -euo pipefail
cd "$(dirname "$0")/.."
provision() { .venv/bin/provision "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

export PROVISION_HOME="${PROVISION_HOME:-$(mktemp -d -t provision-demo.XXXXXX)}"
export PROVISION_CONFIG="${PROVISION_CONFIG:-$PROVISION_HOME/config.yaml}"
touch "$PROVISION_CONFIG"
trap 'provision local-im stop || true' EXIT

step "start a local IM on 127.0.0.1 (state in $PROVISION_HOME)"
provision local-im start --fresh
provision local-im status

step "IM answers"
provision infra version

step "create an infrastructure: a front-end and one worker on the simulated cloud"
infra_id=$(provision infra create tests/data/two-vms.yaml)
echo "infrastructure id: $infra_id"

step "its state, VMs and outputs"
provision infra state "$infra_id"
provision infra vms "$infra_id"
provision infra outputs "$infra_id" -o json

step "destroy it and check nothing is left"
provision infra destroy "$infra_id" --yes
left=$(provision infra list)
if [[ -n "$left" ]]; then echo "left behind in IM: $left" >&2; exit 1; fi
echo "no infrastructure left in IM"
