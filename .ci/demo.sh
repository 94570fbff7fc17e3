#!/usr/bin/env bash
# `make demo`: the main job end to end on the embedded default — a local IM 2.0.0 on its simulated (Dummy)
# cloud, inside a loopback-only network namespace: create an OSCAR cluster, look at it, scale it (by hand and
# with an autoscale policy), write its inventory; then a second cluster and a workflow over both (applied, a file
# run through it, deleted) on stand-in OSCARs (no OSCAR can run here); destroy both clusters.
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
standins=()
cleanup() {
  for pid in "${standins[@]}"; do kill "$pid" 2>/dev/null || true; done
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

step "a second cluster, 'demo-b', for a workflow over two clusters"
provision cluster create demo-b --template oscar --site local-sim --set wn_num=1 --set cluster_name=demo-b

step "stand-in OSCARs for both clusters (ours: OSCAR's API over moto's S3 as MinIO; the simulated VMs run nothing)"
for name in demo demo-b; do
  password=$(provision cluster secrets "$name" --show -o json \
    | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["secrets"]["oscar_password"])')
  ready="$PROVISION_HOME/standin-$name.url"
  log="$PROVISION_HOME/standin-$name.log"
  .venv/bin/python -m standin.oscar --with-moto --name "$name" --password "$password" --ready-file "$ready" \
    >"$log" 2>&1 &
  standins+=($!)
  # moto's server starts in a few seconds; on a busy machine it can take longer: up to 60 s, unless it exits.
  for _ in $(seq 600); do [[ -s "$ready" ]] && break; kill -0 "${standins[-1]}" 2>/dev/null || break; sleep 0.1; done
  [[ -s "$ready" ]] || { echo "the stand-in OSCAR of $name did not start; its log ($log) ends:" >&2; tail -n 20 "$log" >&2; exit 1; }
  provision cluster endpoint "$name" --oscar "$(cat "$ready")"
done

step "a workflow (OSCAR's FDL): demo-b reverses each line and writes to demo's MinIO, where demo upper-cases it"
mkdir -p "$PROVISION_HOME/wf"
cat > "$PROVISION_HOME/wf/reverse.sh" <<'SH'
rev "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH")"
SH
cat > "$PROVISION_HOME/wf/upper.sh" <<'SH'
tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH")"
SH
cat > "$PROVISION_HOME/wf/lines.yaml" <<'FDL'
functions:
  oscar:
  - demo-b:
      name: reverse
      image: ghcr.io/example/tools
      script: reverse.sh
      memory: 256Mi
      input: [{storage_provider: minio, path: lines/in}]
      output: [{storage_provider: minio.demo, path: shout/in}]   # the other cluster's MinIO: filled in on apply
  - demo:
      name: shout
      image: ghcr.io/example/tools
      script: upper.sh
      environment: {Variables: {MODE: upper}}
      input: [{storage_provider: minio, path: shout/in}]
      output: [{storage_provider: minio, path: shout/out}]
FDL
provision workflow validate "$PROVISION_HOME/wf/lines.yaml"
provision workflow plan "$PROVISION_HOME/wf/lines.yaml"
provision workflow apply "$PROVISION_HOME/wf/lines.yaml"

step "a file through the workflow: uploaded to demo-b's MinIO, followed job by job, the final output downloaded"
printf 'hello continuum\n' > "$PROVISION_HOME/hello.txt"
provision workflow run lines --input "$PROVISION_HOME/hello.txt" --download "$PROVISION_HOME/out" --timeout 120
got=$(cat "$PROVISION_HOME/out/hello.txt")
if [[ "$got" != "MUUNITNOC OLLEH" ]]; then echo "unexpected final output: $got" >&2; exit 1; fi
echo "final output: $got"
provision workflow status lines

step "delete the workflow"
provision workflow delete lines
provision workflow list

step "the registry"
provision cluster list

step "destroy, and check nothing is left in IM"
provision cluster destroy demo-b --yes
provision cluster destroy demo --yes
left=$(provision infra list -o json)
if [[ "$left" != "[]" ]]; then echo "left behind in IM: $left" >&2; exit 1; fi
echo "no infrastructure left in IM"
