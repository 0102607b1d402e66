"""The service layer: what the service does (embed, enrol, search, verify, list, delete, erase), free of HTTP.

The routers in :mod:`service.api` parse and validate requests, call
:class:`service.core.operations.ReidService` and shape its results into responses; the errors of
:mod:`service.core.errors` become problem+json there.
"""
