"""`kubectl mailferry`: a kubectl plugin (installed as `kubectl-mailferry`) to watch and steer migrations.

Every action is an ordinary merge patch of a spec field, the same change an Argo CD user makes in Git.
Depends only on the shared kernel (mailferry_api, mailferry_kube), never on the operator or the worker.
"""
