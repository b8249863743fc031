"""``python -m benchmarks.cli …``: the ``otpgate`` command line with the benchmark's
``bench+http://`` driver registered (a scheme the product does not ship).

Only one server process (``--workers 1``) sees the registration: more workers would start
without it.
"""

from __future__ import annotations

from otpgate import registry
from otpgate.cli import main

registry.DRIVERS.setdefault("bench+http", ("benchmarks.httpdriver:from_url", None))

if __name__ == "__main__":
    main()
