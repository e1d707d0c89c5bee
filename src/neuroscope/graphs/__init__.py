"""Graphs over a model's computation: a feature's provenance through an SAE suite
(:mod:`neuroscope.graphs.provenance`) and task circuits found by EAP-IG (:mod:`neuroscope.graphs.circuits`),
both written in one JSON schema (:mod:`neuroscope.graphs.schema`)."""
