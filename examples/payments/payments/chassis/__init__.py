"""The chassis: the runtime every shoestring service carries.

Copier owns these files: `copier update` brings fixes from the template, so changes made here
are merged, not kept apart. Business logic belongs in `handlers/`.
"""

from .context import Context
from .problems import Problem

__all__ = ["Context", "Problem"]
