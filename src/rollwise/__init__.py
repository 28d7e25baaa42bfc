"""rollwise: deploy new versions of machine-learning models safely."""

from rollwise.errors import RollwiseError

__version__ = "0.1.0"

__all__ = ["RollwiseError", "__version__"]
