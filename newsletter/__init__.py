"""newsletter: compose, schedule and deliver a membership organisation's email digest."""

__version__ = "0.1.0"
