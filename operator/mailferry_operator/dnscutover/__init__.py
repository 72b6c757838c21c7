"""DnsCutover: handlers (Kopf wiring) -> observe -> decide (pure step) -> apply."""
