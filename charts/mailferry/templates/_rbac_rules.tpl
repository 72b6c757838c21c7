{{/*
The operator's rules: exactly what mailferry_operator calls, nothing more.
Shared by the namespaced Role and the cluster-wide ClusterRole.
*/}}
{{- define "mailferry.operatorRules" -}}
# Watch the three resources, add Kopf finalizers/annotations.
- apiGroups: [mailferry.io]
  resources: [mailmigrations, dnscutovers]
  verbs: [get, list, watch, patch]
# MailboxSyncs are created and deleted by their MailMigration.
- apiGroups: [mailferry.io]
  resources: [mailboxsyncs]
  verbs: [get, list, watch, patch, create, delete]
- apiGroups: [mailferry.io]
  resources: [mailmigrations/status, mailboxsyncs/status, dnscutovers/status]
  verbs: [get, patch]
# One worker Job per batch per round.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [create, get, list, watch, delete]
# IMAP and DNS-provider credentials (read), DKIM private keys in Secrets the operator owns (create/update).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, update]
# Mailbox inventories (read), the MTA-STS policy ConfigMap (create/update).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, update]
# Kubernetes Events on the resources.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* The worker: read its MailboxSyncs, write their status. Nothing else (credentials arrive as volumes). */}}
{{- define "mailferry.workerRules" -}}
- apiGroups: [mailferry.io]
  resources: [mailboxsyncs]
  verbs: [get]
- apiGroups: [mailferry.io]
  resources: [mailboxsyncs/status]
  verbs: [patch]
{{- end }}
