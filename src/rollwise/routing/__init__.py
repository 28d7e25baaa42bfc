"""Pure traffic assignment: sticky hashing, routing checks and routing tables."""

from rollwise.routing.hashing import bucket_of
from rollwise.routing.table import ModelTable, build_table
from rollwise.routing.weights import check_routing, known_version, parse_assignments

__all__ = [
    "ModelTable",
    "bucket_of",
    "build_table",
    "check_routing",
    "known_version",
    "parse_assignments",
]
