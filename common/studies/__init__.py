"""Studies: what launches, reads, compares and writes up many runs.

Nothing here trains; every module reads run dirs (or starts ``python -m <task>`` processes that write them). The
one-run pieces in ``common/`` never import this package.
"""
