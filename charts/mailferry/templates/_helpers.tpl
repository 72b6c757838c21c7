{{/* Chart name. */}}
{{- define "mailferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already contains the chart name. */}}
{{- define "mailferry.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object; baseLabels for objects that also carry selector labels (which add the instance). */}}
{{- define "mailferry.baseLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: mailferry
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "mailferry.labels" -}}
{{ include "mailferry.baseLabels" . }}
app.kubernetes.io/name: {{ include "mailferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mailferry.operatorSelectorLabels" -}}
app.kubernetes.io/name: mailferry-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mailferry.mtastsSelectorLabels" -}}
app.kubernetes.io/name: mailferry-mta-sts
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mailferry.operatorServiceAccountName" -}}
{{- if .Values.serviceAccount.operator.create }}
{{- default (printf "%s-operator" (include "mailferry.fullname" .)) .Values.serviceAccount.operator.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.operator.name }}
{{- end }}
{{- end }}

{{- define "mailferry.workerServiceAccountName" -}}
{{- default "mailferry-worker" .Values.serviceAccount.worker.name }}
{{- end }}

{{- define "mailferry.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The namespaces the operator watches in namespaced mode (default: the release namespace), as a JSON list. */}}
{{- define "mailferry.watchNamespaces" -}}
{{- if .Values.watch.namespaces }}
{{- toJson (uniq .Values.watch.namespaces) }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/* The namespaces that get the worker ServiceAccount + RoleBinding, as a JSON list. */}}
{{- define "mailferry.workerNamespaces" -}}
{{- if eq .Values.watch.mode "namespaced" }}
{{- include "mailferry.watchNamespaces" . }}
{{- else if .Values.worker.namespaces }}
{{- toJson (uniq .Values.worker.namespaces) }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/* Peering is on when asked for or when more than one replica runs. */}}
{{- define "mailferry.peering" -}}
{{- if or .Values.operator.peering.enabled (gt (int .Values.operator.replicas) 1) }}true{{ end }}
{{- end }}

{{/* MAILFERRY_WORKER_POD: what every worker pod gets from the installation (operator settings.py WORKER_POD_KEYS). */}}
{{- define "mailferry.workerPod" -}}
{{- $w := .Values.worker }}
{{- $pod := dict "labels" $w.podLabels "annotations" $w.podAnnotations "imagePullSecrets" .Values.imagePullSecrets }}
{{- $_ := set $pod "nodeSelector" $w.nodeSelector }}
{{- $_ = set $pod "tolerations" $w.tolerations }}
{{- $_ = set $pod "affinity" $w.affinity }}
{{- $_ = set $pod "priorityClassName" $w.priorityClassName }}
{{- toJson $pod }}
{{- end }}
