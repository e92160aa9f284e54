"""kopf settings for the Ringleader operator: its own names, and patience with slow or cut watches.

:func:`operator_settings` returns the ``kopf.OperatorSettings`` the operator runs
with (``ringleader-operator run`` passes them to ``kopf.run``):

- **Names under the project's prefix.** The finalizer is ``ringleader.dev/finalizer``;
  kopf's per-handler progress lives in annotations ``ringleader.dev/<handler>``
  and the last handled spec in ``ringleader.dev/last-handled-configuration``
  (never in ``status``, which the operator owns field by field).
- **Watches.** Each watch request asks the API server to end it after
  :data:`WATCH_SERVER_TIMEOUT` seconds and is abandoned by the client after
  :data:`WATCH_CLIENT_TIMEOUT` (a cut connection that never closes); a stream
  silent for longer than :data:`WATCH_INACTIVITY_TIMEOUT` (no event, no bookmark)
  is restarted. Reconnects wait :data:`WATCH_RECONNECT_BACKOFF` seconds so an API
  server that keeps closing the stream is not flooded. Ordinary requests give up
  after :data:`REQUEST_TIMEOUT` and are retried with backoff.
- **No scanning.** kopf would list and watch CustomResourceDefinitions and
  Namespaces to follow new resources and namespace globs; the operator watches
  fixed kinds in fixed namespaces, so it needs neither (and its RBAC grants
  neither).
- **Events.** Only explicit events are posted (what changed, every error), as
  component ``ringleader-operator``; log lines are not copied into Events.
- **Peering.** Standalone by default (one replica, ``Recreate`` strategy); with
  ``peering`` set, replicas elect an active one through kopf's ``KopfPeering``
  (namespaced) or ``ClusterKopfPeering`` (cluster-wide) object of that name.
"""

from __future__ import annotations

import logging
import socket

import kopf

__all__ = [
    "DIFFBASE_KEY",
    "FINALIZER",
    "PREFIX",
    "REQUEST_TIMEOUT",
    "WATCH_CLIENT_TIMEOUT",
    "WATCH_INACTIVITY_TIMEOUT",
    "WATCH_RECONNECT_BACKOFF",
    "WATCH_SERVER_TIMEOUT",
    "operator_settings",
]

PREFIX = "ringleader.dev"
FINALIZER = f"{PREFIX}/finalizer"
DIFFBASE_KEY = "last-handled-configuration"

WATCH_SERVER_TIMEOUT = 300  # an integer: kopf passes it as timeoutSeconds, which the API parses as int
WATCH_CLIENT_TIMEOUT = 330.0
WATCH_CONNECT_TIMEOUT = 15.0
WATCH_INACTIVITY_TIMEOUT = 70.0
WATCH_RECONNECT_BACKOFF = 1.0
REQUEST_TIMEOUT = 60.0
CONNECT_TIMEOUT = 15.0


def operator_settings(
    *, peering: str | None = None, clusterwide: bool = False, priority: int = 0
) -> kopf.OperatorSettings:
    """The settings described in the module docstring."""
    settings = kopf.OperatorSettings()

    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX, key=DIFFBASE_KEY)

    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT
    settings.watching.connect_timeout = WATCH_CONNECT_TIMEOUT
    settings.watching.inactivity_timeout = WATCH_INACTIVITY_TIMEOUT
    settings.watching.reconnect_backoff = WATCH_RECONNECT_BACKOFF
    settings.networking.request_timeout = REQUEST_TIMEOUT
    settings.networking.connect_timeout = CONNECT_TIMEOUT

    settings.scanning.disabled = True

    settings.posting.enabled = True
    settings.posting.loggers = False
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "ringleader-operator"
    settings.posting.reporting_instance = socket.gethostname()
    settings.posting.event_name_prefix = "ringleader-"

    settings.peering.standalone = peering is None
    settings.peering.name = peering or "ringleader-operator"
    settings.peering.clusterwide = clusterwide
    settings.peering.priority = priority
    settings.peering.mandatory = peering is not None
    return settings
