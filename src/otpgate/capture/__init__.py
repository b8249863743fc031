"""Where the ``capture`` driver keeps messages instead of sending them: the ``CaptureSink``
port (``base``) and one sink per backend (``memory``, ``sqlite``, ``redis``)."""
