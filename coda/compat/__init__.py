"""The bridge from Celery and kombu (needs the ``celery`` extra).

The core never imports this package.
"""
