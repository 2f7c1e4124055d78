"""GLUE evaluation under its first import path; it lives in ``bertforge.evaluation``."""

from bertforge.evaluation import *  # noqa: F403
from bertforge.evaluation import __all__  # noqa: F401
