"""The ``coda://`` broker and Celery result store: an extension of the supervisor.

Kombu transports and Celery result backends (``coda://``) talk to the
supervisor in the messages of ``coda.broker.messages``; the supervisor's
core knows none of them. It loads ``coda.broker.extension.BrokerExtension``
through the ``coda.supervisor_extensions`` entry point and hands it every
message of those types that a client connection sends.

Nothing is imported here, so importing one part (the message structs, say)
does not load the rest.
"""
