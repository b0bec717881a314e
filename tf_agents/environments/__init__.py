# coding=utf-8
"""Overlay package: in-repo environment modules first, then upstream's."""

import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)
