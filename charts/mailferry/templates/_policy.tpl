{{/* What a spec may pick (docs/threat-model.md): the installer's allowlists, as operator settings and as
     CEL lists for the ValidatingAdmissionPolicy. */}}

{{/* Worker images a spec may name: this chart's image plus workerPolicy.allowedImages (JSON list). */}}
{{- define "mailferry.allowedWorkerImages" -}}
{{- prepend (.Values.workerPolicy.allowedImages | default list) (include "mailferry.image" .) | uniq | toJson -}}
{{- end }}

{{/* ServiceAccounts a spec may name: the worker ServiceAccount plus workerPolicy.allowedServiceAccounts. */}}
{{- define "mailferry.allowedWorkerServiceAccounts" -}}
{{- prepend (.Values.workerPolicy.allowedServiceAccounts | default list) (include "mailferry.workerServiceAccountName" .) | uniq | toJson -}}
{{- end }}

{{- define "mailferry.policyEnv" -}}
- name: MAILFERRY_EGRESS_ALLOW
  value: {{ join "," (.Values.egress.allowedUrls | default list) | quote }}
- name: MAILFERRY_WORKER_IMAGES_ALLOWED
  value: {{ join "," (.Values.workerPolicy.allowedImages | default list) | quote }}
- name: MAILFERRY_WORKER_SERVICE_ACCOUNTS_ALLOWED
  value: {{ join "," (.Values.workerPolicy.allowedServiceAccounts | default list) | quote }}
{{- end }}
