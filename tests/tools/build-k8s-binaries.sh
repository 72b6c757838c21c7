#!/usr/bin/env bash
# Builds the real kube-apiserver, etcd, kubectl and helm from their Go modules
# into a cache outside the repo (no Docker here, so no kind and no envtest
# download). Rebuilds only what is missing. Prints the bin directory.
set -euo pipefail

K8S_VERSION="${MAILFERRY_K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${MAILFERRY_ETCD_VERSION:-v3.6.5}"
HELM_VERSION="${MAILFERRY_HELM_VERSION:-v3.19.0}"
CACHE="${MAILFERRY_CACHE:-$HOME/.cache/mailferry}"
BIN="$CACHE/bin/k8s-$K8S_VERSION"
mkdir -p "$BIN"

# envtest users already have these binaries.
if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
  for b in kube-apiserver etcd kubectl; do
    [[ -x "$KUBEBUILDER_ASSETS/$b" ]] && ln -sf "$KUBEBUILDER_ASSETS/$b" "$BIN/$b"
  done
fi

staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller"

build_module() {  # name  go.mod-body  package  output
  local dir="$CACHE/build/$1"
  mkdir -p "$dir"
  printf '%s\n' "$2" > "$dir/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$3" > "$dir/tools.go"
  (cd "$dir" && go mod tidy
   cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$4" "$3")
}

if [[ ! -x "$BIN/kube-apiserver" || ! -x "$BIN/kubectl" ]]; then
  minor="v0.${K8S_VERSION#v1.}"
  mod="module mailferry/k8sbuild

go 1.24.0

require k8s.io/kubernetes $K8S_VERSION
"
  for s in $staging; do mod+="replace k8s.io/$s => k8s.io/$s $minor
"; done
  [[ -x "$BIN/kube-apiserver" ]] || build_module k8s "$mod" k8s.io/kubernetes/cmd/kube-apiserver "$BIN/kube-apiserver"
  [[ -x "$BIN/kubectl" ]] || build_module k8s "$mod" k8s.io/kubernetes/cmd/kubectl "$BIN/kubectl"
fi

if [[ ! -x "$BIN/etcd" ]]; then
  build_module etcd "module mailferry/etcdbuild

go 1.24.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
" go.etcd.io/etcd/server/v3 "$BIN/etcd"
fi

if [[ ! -x "$BIN/helm" ]]; then
  build_module helm "module mailferry/helmbuild

go 1.24.0

require helm.sh/helm/v3 $HELM_VERSION
" helm.sh/helm/v3/cmd/helm "$BIN/helm"
fi

echo "$BIN"
