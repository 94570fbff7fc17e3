#!/usr/bin/env bash
# `make demo-continuum`: the whole continuum from ONE continuum file, inside a loopback-only network namespace:
# an edge cluster (preflight only, over SSH to two real sshd hosts on 127.0.77.x), two IM clusters on the
# simulated cloud (local-sim) whose OSCARs are stand-ins (standin/oscar.py: no OSCAR can run here), and a
# workflow over them with an AWS Lambda stage on moto's server as AWS (standin/aws.py: no function code runs).
# plan, up, status; a file through the OSCAR stages (the timeline, the final outputs checked); down; nothing left
# in IM. Uses a throwaway state directory unless PROVISION_HOME is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
provision() { .venv/bin/provision "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
# json_get FILE KEY...: one value of a stand-in's ready file.
json_get() { "$PY" -c $'import json, sys\nd = json.load(open(sys.argv[1]))\nfor k in sys.argv[2:]: d = d[k]\nprint(d)' "$@"; }

made_home=
if [[ -z "${PROVISION_HOME:-}" ]]; then
  PROVISION_HOME="$(mktemp -d -t provision-demo-continuum.XXXXXX)"
  made_home=$PROVISION_HOME
fi
export PROVISION_HOME
export PROVISION_CONFIG="${PROVISION_CONFIG:-$PROVISION_HOME/config.yaml}"
touch "$PROVISION_CONFIG"
# AWS is moto on loopback: fake keys, no profile, no instance metadata (AWS_ENDPOINT_URL is set once it answers).
export AWS_ACCESS_KEY_ID=AKIADEMOCONTINUUM001 AWS_SECRET_ACCESS_KEY=demo-continuum-fake-secret-key-000000000
export AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN
work="$PROVISION_HOME/demo"
mkdir -p "$work/logs"

# Stop every stand-in and the local IM (all at once), and remove the throwaway state directory if this script made it.
standins=()
im_start=
cleanup() {
  for pid in "${standins[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -n "$im_start" ]]; then wait "$im_start" 2>/dev/null || true; fi
  provision local-im stop || true
  for pid in "${standins[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n "$made_home" ]]; then rm -rf -- "$made_home"; fi
}
trap cleanup EXIT

# start NAME CMD...: a stand-in in the background, its output in $work/logs/NAME.log.
start() {
  local name=$1
  shift
  "$@" >"$work/logs/$name.log" 2>&1 &
  standins+=($!)
  eval "pid_$name=$!"
}
# ready NAME FILE: wait for the stand-in NAME to write FILE (it exiting first, or 30 s, is a failure).
ready() {
  local name=$1 file=$2 pid_var="pid_$1"
  for _ in $(seq 300); do
    [[ -s "$file" ]] && return 0
    kill -0 "${!pid_var}" 2>/dev/null || break
    sleep 0.1
  done
  echo "the stand-in $name did not start; its log:" >&2
  tail -n 20 "$work/logs/$name.log" >&2
  exit 1
}

step "a local IM on 127.0.0.1 (state in $PROVISION_HOME), and the stand-ins: AWS, two sshd hosts, two OSCARs"
# All started at once: the local IM (in the background, its output shown once it answers) and the stand-ins. AWS is
# moto's server with Lambda's Docker off, an image pushed to its ECR, an IAM role and two S3 buckets.
provision local-im start --fresh >"$work/logs/im.log" 2>&1 &
im_start=$!
start aws "$PY" -m standin.aws --ready-file "$work/aws.json" --repository demo-tally --tag v1 \
  --role demo-tally-role --bucket demo-archive --bucket demo-drop
start sshd "$PY" -m standin.sshd --dir "$work/sshd" --host edge-server=127.0.77.2 --host edge-agent=127.0.77.3 \
  --inventory "$work/edge-hosts.yml" --ready-file "$work/sshd.json"
ready aws "$work/aws.json"
AWS_ENDPOINT_URL=$(json_get "$work/aws.json" url)
export AWS_ENDPOINT_URL # from here on: for provision, and for the stand-in OSCARs (a stage's s3.<id> outputs)
image=$(json_get "$work/aws.json" image)
role=$(json_get "$work/aws.json" role)
# The two IM clusters' OSCARs: OSCAR's API over moto's S3 as MinIO, each with its cluster's known password.
PASSWORD_A=demo-continuum-oscar-a-pw-41c
PASSWORD_B=demo-continuum-oscar-b-pw-9f2
start oscar_a "$PY" -m standin.oscar --with-moto --name demo-a --password "$PASSWORD_A" --ready-file "$work/oscar-a.url"
start oscar_b "$PY" -m standin.oscar --with-moto --name demo-b --password "$PASSWORD_B" --ready-file "$work/oscar-b.url"
ready sshd "$work/sshd.json"
ready oscar_a "$work/oscar-a.url"
ready oscar_b "$work/oscar-b.url"
oscar_a=$(cat "$work/oscar-a.url")
oscar_b=$(cat "$work/oscar-b.url")
started=0
wait "$im_start" || started=$?
im_start=
cat "$work/logs/im.log"
if [[ $started != 0 ]]; then exit "$started"; fi
echo "AWS (moto) at $AWS_ENDPOINT_URL: image $image, role $role"
"$PY" -c $'import json, sys\nfor n, h in json.load(open(sys.argv[1]))["hosts"].items(): print(f"sshd {n} on {h[\'address\']}:{h[\'port\']}")' \
  "$work/sshd.json"
echo "stand-in OSCAR of demo-a at $oscar_a, of demo-b at $oscar_b"

step "the continuum file: an edge cluster (preflight), two IM clusters, a workflow over them with a Lambda stage"
mkdir -p "$work/scripts"
cat >"$work/scripts/reverse.sh" <<'SH'
rev "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH")"
SH
cat >"$work/scripts/upper.sh" <<'SH'
tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH")"
SH
cat >"$work/continuum.yaml" <<YAML
name: demo
clusters:
  demo-edge:                    # K3s hosts of your own: only the roles' checks, over SSH (nothing installed)
    edge: {inventory: edge-hosts.yml, preflight: true}
  demo-a:
    template: oscar
    site: local-sim
    inputs: {wn_num: 1, oscar_password: $PASSWORD_A}
    oscar_url: $oscar_a
  demo-b:
    template: oscar
    site: local-sim
    inputs: {wn_num: 1, oscar_password: $PASSWORD_B}
    oscar_url: $oscar_b
workflow:
  inline:
    functions:
      oscar:
      - demo-a:                 # reverses each line, into demo-b's MinIO (its credentials filled in on apply)
          name: reverse
          image: ghcr.io/example/tools
          script: scripts/reverse.sh
          input: [{storage_provider: minio, path: lines/in}]
          output: [{storage_provider: minio.demo-b, path: shout/in}]
      - demo-b:                 # upper-cases it, into its own MinIO and a copy on S3
          name: shout
          image: ghcr.io/example/tools
          script: scripts/upper.sh
          input: [{storage_provider: minio, path: shout/in}]
          output:
          - {storage_provider: minio, path: shout/out}
          - {storage_provider: s3.aws1, path: demo-archive/out}
      aws:                      # a bucket of its own: no function code runs on moto, so no run could end in it
      - lambda:                 # a function on AWS Lambda, triggered by the files dropped in S3 demo-drop/in
          name: demo-tally
          memory: 512
          timeout: 60
          container: {image: '$image'}
          input: [{storage_provider: s3.aws1, path: demo-drop/in}]
          output: [{storage_provider: minio.demo-b, path: tally/out}]
        iam: {role: '$role'}
    storage_providers:
      s3:
        aws1: {access_key: $AWS_ACCESS_KEY_ID, secret_key: $AWS_SECRET_ACCESS_KEY, region: $AWS_DEFAULT_REGION}
YAML
cat "$work/continuum.yaml"

step "plan: what up would do, sending nothing"
provision continuum plan "$work/continuum.yaml"

step "up: the clusters in parallel (IM creates two, the edge hosts are checked over SSH), then the workflow"
provision continuum up "$work/continuum.yaml"

step "status: each cluster (IM's state, live), its last step; the workflow's stages"
provision continuum status demo

step "a file through the workflow's OSCAR stages: uploaded to demo-a's MinIO, followed job by job, downloaded"
# Two stages read nothing another writes (demo-a/reverse, and the function): --stage names where the file goes in.
printf 'hello continuum\n' >"$work/hello.txt"
provision workflow run demo --input "$work/hello.txt" --stage demo-a/reverse --download "$work/out" --timeout 60
got=$(cat "$work/out/shout/out/hello.txt")
copy=$(cat "$work/out/demo-archive/out/hello.txt")
if [[ "$got" != "MUUNITNOC OLLEH" || "$copy" != "$got" ]]; then
  echo "unexpected final outputs: '$got' (demo-b's MinIO), '$copy' (S3)" >&2
  exit 1
fi
echo "final output: $got (demo-b's MinIO shout/out, and its copy on S3 demo-archive/out)"

step "the workflow's stages, the Lambda function among them (deployed on moto; no function code runs here)"
provision workflow status demo

step "down: the workflow deleted (the OSCAR services, the Lambda function and its trigger), then the clusters"
provision continuum down demo --yes
provision workflow list
provision cluster list

step "check nothing is left in IM (nor any function on AWS Lambda)"
left=$(provision infra list -o json)
if [[ "$left" != "[]" ]]; then
  echo "left behind in IM: $left" >&2
  exit 1
fi
echo "no infrastructure left in IM"
functions=$("$PY" -c $'import os\nfrom standin.aws import client\nanswer = client(os.environ["AWS_ENDPOINT_URL"], "lambda").list_functions()\nprint(" ".join(f["FunctionName"] for f in answer["Functions"]))')
if [[ -n "$functions" ]]; then
  echo "left behind on AWS Lambda: $functions" >&2
  exit 1
fi
echo "no function left on AWS Lambda"
