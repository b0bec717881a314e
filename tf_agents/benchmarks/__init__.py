# coding=utf-8
"""Benchmarks of this repository's policy export path against upstream's.

A package of this repository only (upstream tf-agents has `tf_agents.benchmark`,
singular, and no `tf_agents.benchmarks`), so this is a plain package: it does
not extend its path. Nothing here ships in the wheel.
"""
