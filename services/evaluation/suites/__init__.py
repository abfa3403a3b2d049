"""Benign proxy suites shipped with the project, and the suite registry (registry.yaml).

Every task here is a clearly labelled, harmless STAND-IN for a national-security
evaluation: toy CTF puzzles, lab arithmetic, textbook physics. They exist so the
pipeline (planning, leased jobs, Inspect runs, findings) can be exercised end
to end; they measure nothing about real hazardous capability. The agency plugs
in its own suites by adding entries to a registry file that point at its own
Inspect tasks (``module:function``).
"""
