{{/* mailferry-operator's flags (operator/mailferry_operator/main.py argparse). */}}
{{- define "mailferry.operatorArgs" -}}
- --metrics-port={{ .Values.operator.metricsPort }}
- --log-level={{ .Values.operator.logLevel }}
{{- if eq .Values.watch.mode "cluster" }}
- --all-namespaces
{{- else }}
{{- range $ns := include "mailferry.watchNamespaces" . | fromJsonArray }}
- --namespace={{ $ns }}
{{- end }}
{{- end }}
{{- if include "mailferry.peering" . }}
- --peering={{ .Values.operator.peering.name }}
{{- if .Values.operator.peering.priority }}
- --priority={{ .Values.operator.peering.priority }}
{{- end }}
{{- else }}
- --standalone
{{- end }}
{{- range .Values.operator.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* python -m mailferry_operator.mtasts.server's flags. */}}
{{- define "mailferry.mtastsArgs" -}}
- --port={{ .Values.mtaSts.port }}
- --namespace={{ .Release.Namespace }}
- --config-map={{ .Values.mtaSts.policyConfigMap }}
{{- end }}
