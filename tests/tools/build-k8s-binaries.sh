#!/usr/bin/env bash
# Builds the real kube-apiserver, kube-controller-manager, kubectl, etcd and helm from their Go modules
# into a cache outside the repo (no Docker needed, nothing prebuilt downloaded:
# only Go modules from the module proxy). Rebuilds only what is missing or has
# the wrong version. Prints the bin directory on stdout (build logs go to stderr).
#
#   KUBEBUILDER_ASSETS=dir   use kube-apiserver/etcd/kubectl from an envtest
#                            assets dir; whatever it lacks is built as usual
#   MAILFERRY_CACHE=dir      cache root (default ~/.cache/mailferry)
#   MAILFERRY_K8S_VERSION / MAILFERRY_ETCD_VERSION / MAILFERRY_HELM_VERSION
#
# Needs Go >= 1.24 on PATH. Cold: several minutes on 2 cores (see README); warm: < 1 s.
set -euo pipefail

K8S_VERSION="${MAILFERRY_K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${MAILFERRY_ETCD_VERSION:-v3.6.5}"
HELM_VERSION="${MAILFERRY_HELM_VERSION:-v3.19.0}"
CACHE="${MAILFERRY_CACHE:-$HOME/.cache/mailferry}"
BIN="$CACHE/bin/k8s-$K8S_VERSION"
mkdir -p "$BIN"

log() { echo "build-k8s-binaries: $*" >&2; }

if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then PATH="$PATH:/usr/local/go/bin"; fi
command -v go >/dev/null || { log "Go toolchain not found on PATH (need Go >= 1.24)"; exit 1; }

# has_version BINARY EXPECTED: the binary exists and reports the expected version.
has_version() {
  local out
  [[ -x "$1" ]] || return 1
  case "$(basename "$1")" in
    kube-apiserver | kube-controller-manager) out="$("$1" --version 2>/dev/null)" ;;
    kubectl) out="$("$1" version --client 2>/dev/null)" ;;
    etcd) out="$("$1" --version 2>/dev/null)" ;;
    helm) out="$("$1" version --short 2>/dev/null)" ;;
    *) return 1 ;;
  esac
  [[ "$out" == *"$2"* ]]
}

# prepare_module NAME GO.MOD-BODY PACKAGE...: a module dir whose go.mod/go.sum cover the packages
prepare_module() {
  local dir="$CACHE/build/$1" body="$2" p
  shift 2
  mkdir -p "$dir"
  printf '%s\n' "$body" > "$dir/go.mod"
  { printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for p in "$@"; do printf '\t_ "%s"\n' "$p"; done
    printf ')\n'; } > "$dir/tools.go"
  (cd "$dir" && go mod tidy >&2)
}

# go_build NAME PACKAGE OUTPUT LDFLAGS
go_build() {
  log "building $2 -> $3"
  (cd "$CACHE/build/$1" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $4" -o "$3.tmp" "$2" >&2)
  mv -f "$3.tmp" "$3"
}

# The bin dir to print: the cache dir, or (with KUBEBUILDER_ASSETS) a dir of
# symlinks to the envtest assets plus whatever we build.
OUT="$BIN"
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  OUT="$CACHE/bin/assets-$(printf '%s' "$KUBEBUILDER_ASSETS" | sha1sum | cut -c1-12)"
  mkdir -p "$OUT"
  for b in kube-apiserver kube-controller-manager etcd kubectl helm; do
    if [[ -x "$KUBEBUILDER_ASSETS/$b" ]]; then
      ln -sfn "$KUBEBUILDER_ASSETS/$b" "$OUT/$b"
    fi
  done
fi
# need NAME VERSION: true when we must build NAME (not supplied by KUBEBUILDER_ASSETS, not yet built).
need() {
  if [[ "$OUT" != "$BIN" && -x "$OUT/$1" && "$(readlink "$OUT/$1")" == "$KUBEBUILDER_ASSETS/$1" ]]; then
    return 1
  fi
  ! has_version "$BIN/$1" "$2"
}

k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
k8s_cmds=(kube-apiserver kube-controller-manager kubectl)
k8s_todo=()
for b in "${k8s_cmds[@]}"; do if need "$b" "$K8S_VERSION"; then k8s_todo+=("$b"); fi; done
if ((${#k8s_todo[@]})); then
  staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller"
  mod="module mailferry/k8sbuild

go 1.24.0

require k8s.io/kubernetes $K8S_VERSION
"
  # k8s.io/kubernetes requires its staging modules at v0.0.0: pin them to the release.
  for s in $staging; do mod+="replace k8s.io/$s => k8s.io/$s v0.${K8S_VERSION#v1.}
"; done
  ver=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ver+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor"
    ver+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  prepare_module k8s "$mod" "${k8s_cmds[@]/#/k8s.io/kubernetes/cmd/}"
  for b in "${k8s_todo[@]}"; do
    go_build k8s "k8s.io/kubernetes/cmd/$b" "$BIN/$b" "$ver"
  done
fi

if need etcd "${ETCD_VERSION#v}"; then
  # etcd's main package is the server module's root (server/main.go).
  prepare_module etcd "module mailferry/etcdbuild

go 1.24.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
" go.etcd.io/etcd/server/v3
  go_build etcd go.etcd.io/etcd/server/v3 "$BIN/etcd" ""
fi

if need helm "$HELM_VERSION"; then
  hv="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  hv+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    hv+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$k8s_minor"
  done
  prepare_module helm "module mailferry/helmbuild

go 1.24.0

require helm.sh/helm/v3 $HELM_VERSION
" helm.sh/helm/v3/cmd/helm
  go_build helm helm.sh/helm/v3/cmd/helm "$BIN/helm" "$hv"
fi

if [[ "$OUT" != "$BIN" ]]; then
  for b in kube-apiserver kube-controller-manager etcd kubectl helm; do
    [[ -e "$OUT/$b" ]] || ln -sfn "$BIN/$b" "$OUT/$b"
  done
fi

for b in kube-apiserver kube-controller-manager etcd kubectl helm; do
  [[ -x "$OUT/$b" ]] || { log "missing $OUT/$b after build"; exit 1; }
done
echo "$OUT"
