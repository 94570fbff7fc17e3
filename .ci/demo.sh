#!/usr/bin/env bash
# `make demo`: the main job end to end on the embedded default — a local IM 2.0.0 on its simulated (Dummy)
# cloud, inside a loopback-only network namespace: create an OSCAR cluster, look at it, scale it (by hand and
# with an autoscale policy), write its inventory, destroy it.
# Uses a throwaway state directory unless PROVISION_HOME is set.
set -euo pipefail
cd "$(dirname "$0")/.."
provision() { .venv/bin/provision "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

made_home=
if [[ -z "${PROVISION_HOME:-}" ]]; then
  PROVISION_HOME="$(mktemp -d -t provision-demo.XXXXXX)"
  made_home=$PROVISION_HOME
fi
export PROVISION_HOME
export PROVISION_CONFIG="${PROVISION_CONFIG:-$PROVISION_HOME/config.yaml}"
touch "$PROVISION_CONFIG"
# Stop the local IM, and remove the throwaway state directory if this script made it.
cleanup() {
  provision local-im stop || true
  if [[ -n "$made_home" ]]; then rm -rf -- "$made_home"; fi
}
trap cleanup EXIT

step "start a local IM on 127.0.0.1 (state in $PROVISION_HOME)"
provision local-im start --fresh
provision local-im status

step "the oscar template and its inputs"
provision template show oscar | head -n 12

step "create cluster 'demo': a front-end and 2 workers on the simulated cloud (site local-sim)"
provision cluster create demo --template oscar --site local-sim --set wn_num=2 --set cluster_name=demo

step "status, read from IM"
provision cluster status demo

step "outputs (secrets masked)"
provision cluster outputs demo

step "scale to 4 workers, then down to 1 removing worker 2 by name"
provision cluster scale demo --workers 4
provision cluster scale demo --workers 1 --remove 2

step "the Ansible inventory the add-on playbooks use (workers reached through the front-end)"
provision cluster inventory demo --path "$PROVISION_HOME/inventories/demo/hosts.yml"

step "autoscale: a policy whose schedule (active at every minute) sets a floor of 3 workers; one tick scales up, and says why"
cat > "$PROVISION_HOME/policy.yaml" <<'POLICY'
version: 1
min_workers: 1
max_workers: 5
cooldown: 5m
max_step: 3
schedules:
  - name: every-minute-floor
    cron: "* * * * *"
    timezone: Europe/Madrid
    min: 3
POLICY
provision autoscale enable demo --policy "$PROVISION_HOME/policy.yaml"
provision autoscale run --once
provision autoscale explain demo --last 1
provision autoscale disable demo

step "the registry"
provision cluster list

step "destroy, and check nothing is left in IM"
provision cluster destroy demo --yes
left=$(provision infra list -o json)
if [[ "$left" != "[]" ]]; then echo "left behind in IM: $left" >&2; exit 1; fi
echo "no infrastructure left in IM"
