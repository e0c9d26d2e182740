"""The LightningModule (``classifier``) and its metrics (``metrics``).

Nothing is imported here: the config layer reads the light ``names`` module before a run
starts, and importing the module itself would load Lightning (seconds) for a ``--help``.
"""
