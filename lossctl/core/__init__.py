"""The math: loss kernels and their catalogue, exact sums, mergeable states, intervals.

``losses`` is the catalogue (one entry per loss: kernel, parameters, columns,
checks, direction), ``kernels`` the vectorised per-row kernels, ``exact`` the
exact sums, ``state`` the ``update / merge / result`` state every engine
shares, ``intervals`` the bucketed bootstrap.  Nothing here reads files.
"""
