"""What operators see of a running otpgate: Prometheus metrics (``metrics``), OpenTelemetry
traces (``tracing``), structured logs (``logs``) and the context every log line and span
carries (``context``); ``instrument`` holds the small wrappers that feed them from the
store, the drivers and the bus handlers, and ``asgi`` the one around the HTTP app."""
