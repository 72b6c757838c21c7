"""The Secret the application reads (pure): everything it needs in one object, so each change is one
atomic write and the application never sees a weight from one step with a key from another.

Keys (all text):
    weight            percent of mail to send through `provider` (the rest through `previousProvider`)
    provider, apiKey                  the new provider and its key
    previousProvider, previousApiKey  the old provider and its key
    primaryProvider, primaryApiKey    for an application that cannot split traffic: the new provider
                                      once the weight is 100 (the key swap), else the old one (so a hard
                                      stop or a rollback to 0 % also swaps the key back)
    step, decidedAt, sendingCutover   where the ramp is and since when (for the application's logs)
An application reloads the mounted file (kubelet refreshes it within about a minute) or watches the Secret.
"""

from __future__ import annotations

from mailferry_api.sendingcutover import SendingCutoverSpec, SendingCutoverStatus

MANAGED_BY = {"app.kubernetes.io/managed-by": "mailferry"}
OWNER_LABEL = "mailferry.io/sendingcutover"


def app_secret_data(
    name: str, spec: SendingCutoverSpec, status: SendingCutoverStatus, new_key: str, old_key: str
) -> dict[str, str]:
    swapped = status.weight >= 100
    return {
        "weight": str(status.weight),
        "provider": spec.provider.name,
        "apiKey": new_key,
        "previousProvider": spec.previous_provider.name,
        "previousApiKey": old_key,
        "primaryProvider": spec.provider.name if swapped else spec.previous_provider.name,
        "primaryApiKey": new_key if swapped else old_key,
        "step": str(status.step),
        "decidedAt": status.step_started_at.isoformat() if status.step_started_at else "",
        "sendingCutover": name,
    }


def labels(name: str) -> dict[str, str]:
    return {**MANAGED_BY, OWNER_LABEL: name}
