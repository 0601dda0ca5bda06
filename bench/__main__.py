"""``python -m bench [--quick | --size large] [--only ...]``."""

from .harness import main

main()
