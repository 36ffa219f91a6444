"""Running an evaluation: a request is planned (``plan``), then executed by an engine.

``plan`` holds the request, the column resolution and the outcome every
engine returns; ``chunks`` turns record batches into the arrays the states
take; ``local`` runs on this machine's threads; ``joins`` brings a second
file's columns; ``saved`` writes and merges saved states.
"""
