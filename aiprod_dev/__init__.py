"""AIPROD's developer tooling: the code behind ``noxfile.py``.

The noxfile is a table of contents of sessions; what they need lives here, in small
modules that the noxfile, the maintenance scripts and the tooling tests import. Reading
order:

- ``workspace``: the packages, their dependency graph, requirements and the scripts'
  PEP 723 headers (names and requirements parsed with ``packaging``).
- ``hosts``: facts about this machine: pip's find-links (the local CPU torch), uv, CUDA.
- ``lock``: ``uv.lock``, ``constraints.txt`` exported from it, and the checks that keep
  the two, the scripts' headers and the lock's portability in agreement.
- ``environments``: building and reusing environments from locked versions.
- ``targets``: the test targets, their inputs and the pytest command line of each.
- ``changes``: which targets a git change selects, and why.
- ``results``: the test-result cache (a passing run on identical inputs is not repeated).

Nothing here reads or writes ``os.environ``: callers pass environments in and get
``env=`` mappings back, so one session never leaks settings into the next.
"""
