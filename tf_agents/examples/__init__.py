# coding=utf-8
"""Overlay package: in-repo policy modules first, then upstream tf-agents'."""

import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)
