#!/bin/sh
# Deploy a trained model with rollwise from any CI system, in plain POSIX shell.
#
#   ROLLWISE_URL=https://rollwise.internal:8080 ROLLWISE_TOKEN=... \
#   ARTIFACT_UPLOAD_URL=https://artifacts.example.com/iris \
#   sh examples/ci/deploy.sh iris.onnx [VERSION]
#
# 1. uploads the artifact (HTTP PUT to $ARTIFACT_UPLOAD_URL/<file>; replace with your
#    store's own client) and computes its sha256;
# 2. writes version.yaml (url + sha256) and rollout.yaml (examples/ci/rollout.yaml with
#    the candidate set to VERSION, default: git-<commit>);
# 3. runs `rollwise deploy`, which registers the version, waits until every live replica
#    has loaded it, rolls it out and follows the rollout to its end;
# 4. acts on the exit code, and keeps the JSON report in deploy.json.
#
# The gateway config must allow the URL: registration.url_prefixes.
set -eu

artifact=${1:?usage: deploy.sh ARTIFACT [VERSION]}
here=$(cd "$(dirname "$0")" && pwd)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || date +%Y%m%d%H%M%S)
version=${2:-git-$commit}
upload=${ARTIFACT_UPLOAD_URL:?set ARTIFACT_UPLOAD_URL, where the replicas download artifacts from}
: "${ROLLWISE_URL:?set ROLLWISE_URL, the gateway address}"
: "${ROLLWISE_TOKEN:?set ROLLWISE_TOKEN, an operator token}"

if command -v sha256sum >/dev/null 2>&1; then
    digest=$(sha256sum "$artifact" | cut -d ' ' -f 1)
else
    digest=$(shasum -a 256 "$artifact" | cut -d ' ' -f 1)
fi
name="iris-$version.onnx"
url="$upload/$name"
curl --fail --silent --show-error --upload-file "$artifact" "$url"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/version.yaml" <<YAML
backend: onnx
url: "$url"
sha256: "$digest"
YAML
sed "s/^candidate: .*/candidate: $version/" "$here/rollout.yaml" > "$work/rollout.yaml"

# Not under `set -e`: the exit code is the answer, read below.
status=0
rollwise deploy -f "$work/rollout.yaml" --version "$work/version.yaml" \
    --ready-timeout 300 --timeout 3600 --json > deploy.json || status=$?

case $status in
    0) echo "iris $version is live (promoted)" ;;
    2) echo "refused: fix the spec, the version file or the token" >&2 ;;
    3) echo "iris $version was rolled back; the stable version serves everyone" >&2 ;;
    4) echo "iris $version failed, never got ready, or the rollout outlived the wait" >&2 ;;
    *) echo "rollwise deploy could not finish (exit $status): is the gateway reachable?" >&2 ;;
esac
# The one-line reason, without needing jq.
sed -n 's/^  "message": \(.*\)$/  reason: \1/p' deploy.json >&2
exit "$status"
