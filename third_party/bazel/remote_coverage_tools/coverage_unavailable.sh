#!/bin/sh
echo "Coverage is unavailable in this repository: Bazel builds offline and the" \
  "real remote_coverage_tools cannot be fetched (see third_party/bazel/README.md)." >&2
exit 1
