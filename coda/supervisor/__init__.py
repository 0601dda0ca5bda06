"""The supervisor: process pool, engine, stores, listeners and the extension interface."""

from .supervisor import Supervisor, SupervisorConfig

__all__ = ["Supervisor", "SupervisorConfig"]
