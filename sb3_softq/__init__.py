import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sb3_softq.softq import SoftQ
    from sb3_softq.softq_lambda import SoftQLambda

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "SoftQ",
    "SoftQLambda",
]


def __getattr__(name: str) -> Any:
    # The algorithms (and PyTorch) are imported on first use, so that the NumPy-only `sb3_softq.tabular`
    # can be used without PyTorch installed.
    if name == "SoftQ":
        from sb3_softq.softq import SoftQ

        return SoftQ
    if name == "SoftQLambda":
        from sb3_softq.softq_lambda import SoftQLambda

        return SoftQLambda
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
