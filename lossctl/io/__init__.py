"""Reading and writing files: inputs -> Arrow record batches, and atomic outputs.

``sources`` finds the inputs and decides how to read each; ``reader``,
``csv`` (with the C fast path ``fastcsv``) and ``parquet`` stream the needed
columns; ``columns`` resolves column specs; ``sinks`` writes outputs all or
nothing.  Nothing here knows about losses.
"""
