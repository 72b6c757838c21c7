{{/*
The operator's rules: what mailferry_operator calls (and Kopf needs to watch and patch what it handles), nothing
more. Shared by the namespaced Role and the cluster-wide ClusterRole; deploy/base/rbac.yaml has the same rules,
and tests/unit/install/test_install_rbac_code.py checks them against the operator's code.
*/}}
{{- define "mailferry.operatorRules" -}}
# Watch the resources; Kopf patches annotations (handler progress) and its finalizer.
- apiGroups: [mailferry.io]
  resources: [mailmigrations, dnscutovers]
  verbs: [get, list, watch, patch]
# SendingCutovers: watched, and read fresh before each decision (Kopf's copy may be older).
- apiGroups: [mailferry.io]
  resources: [sendingcutovers]
  verbs: [get, list, watch, patch]
# NoticePlans: watched by their timer (no GET: Kopf lists and watches).
- apiGroups: [mailferry.io]
  resources: [noticeplans]
  verbs: [list, watch, patch]
# One MailboxSync per mailbox, created (and removed) by its MailMigration.
- apiGroups: [mailferry.io]
  resources: [mailboxsyncs]
  verbs: [get, list, watch, create, patch, delete]
# The operator owns these statuses (the worker owns MailboxSync status).
- apiGroups: [mailferry.io]
  resources: [mailmigrations/status, dnscutovers/status, sendingcutovers/status, noticeplans/status]
  verbs: [patch]
# Owner references with blockOwnerDeletion (MailboxSyncs, Jobs, DKIM Secrets) need this where the
# OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift, hardened clusters).
- apiGroups: [mailferry.io]
  resources: [mailmigrations/finalizers, dnscutovers/finalizers]
  verbs: [update]
# One worker Job per batch per round.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [create, list, watch, delete]
# IMAP, DNS-provider and sending-provider credentials (read); DKIM private keys in Secrets the operator
# creates; a SendingCutover's application Secret (created, then replaced whole: one atomic write per step).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, update]
# Mailbox inventories and notice templates (read); the MTA-STS policy ConfigMap and the notice ledgers
# (create, patch).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
# Kubernetes Events on the resources.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* The worker: read its MailboxSyncs, write their status, hold one Lease per mailbox, report Events.
Nothing else (credentials arrive as volumes). */}}
{{- define "mailferry.workerRules" -}}
- apiGroups: [mailferry.io]
  resources: [mailboxsyncs]
  verbs: [get]
- apiGroups: [mailferry.io]
  resources: [mailboxsyncs/status]
  verbs: [patch]
# One writer per mailbox: a Lease per MailboxSync, taken, renewed and deleted (released) with
# resourceVersion checks.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update, delete]
# DeletionsHeld: an Event on the MailboxSync when the deletion safety cap holds removals back.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
