"""Gmail labels (issue 15): place.py decides one home per message (pure), views.py shows a Gmail source
as one view per home over All Mail (pure), source.py is the source connection doing that (I/O),
destination.py carries folders to a Gmail destination as labels (no second upload)."""

from .place import IMPORTANT_KEYWORD, HomeKind, Placement, keyword, place

__all__ = ["IMPORTANT_KEYWORD", "HomeKind", "Placement", "keyword", "place"]
