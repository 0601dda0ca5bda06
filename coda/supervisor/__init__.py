"""The supervisor: process pool, scheduler, stores and the listeners."""

from .supervisor import Supervisor, SupervisorConfig

__all__ = ["Supervisor", "SupervisorConfig"]
