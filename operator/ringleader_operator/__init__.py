"""Ringleader's Kubernetes operator: one ``LoadBalancingExporter`` resource runs tier 1.

The declarative half is pure functions over plain data, testable without a cluster:

- :mod:`ringleader_operator.spec`: the custom resource's ``spec`` as typed, frozen objects
  (:func:`~ringleader_operator.spec.parse_spec`, :class:`~ringleader_operator.spec.SpecError`).
- :mod:`ringleader_operator.render`: the data plane's YAML config rendered from a spec and validated
  with the data plane's own validator (:func:`~ringleader_operator.render.render_config`).
- :mod:`ringleader_operator.builders`: every Kubernetes object the operator owns, as dicts
  (:func:`~ringleader_operator.builders.build_all`).
- :mod:`ringleader_operator.owner`: the resource's identity, labels and owner references.
- :mod:`ringleader_operator.convert`: a tier-1 collector's ``loadbalancing`` block as a resource spec
  (:mod:`ringleader_operator.alloy` reads Grafana Alloy's form of it).

The kopf handlers build on these and only apply what they return. docs/operator.md is the user guide.
"""

__version__ = "0.1.0"
