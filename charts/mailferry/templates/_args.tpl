{{/* mailferry-operator's flags (operator/mailferry_operator/main.py argparse). */}}
{{- define "mailferry.operatorArgs" -}}
- --metrics-port={{ .Values.operator.metricsPort }}
- --liveness-port={{ .Values.operator.livenessPort }}
- --log-level={{ .Values.operator.logLevel }}
- --log-format={{ .Values.operator.logFormat }}
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


{{/* python -m mailferry_operator.mtasts.server's flags (operator/mailferry_operator/mtasts/server.py). */}}
{{- define "mailferry.mtastsArgs" -}}
- --policy-file=/etc/mta-sts/mta-sts.txt
- --port={{ .Values.mtaSts.port }}
{{- end }}
