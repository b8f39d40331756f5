"""Swapout in any residual network (`convert`, `find_joins`), beyond the paper's own models.

- `swapout.conversion.convert`: find the joins of a traced model and put swapout (or another method) there;
- `swapout.conversion.graph`: the tracing and the rule that decides which additions are residual joins;
- `swapout.conversion.arguments`: the checks of the arguments that name parts of a model.
"""

from .convert import Join, convert, find_joins

__all__ = ["Join", "convert", "find_joins"]
