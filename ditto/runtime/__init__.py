"""Stepwise runtimes ("backends"): run a model for a context step plus N generation steps.

Every backend returns the same step dumps (see `ditto.runtime.backend`).
"""
