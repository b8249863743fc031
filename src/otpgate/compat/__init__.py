"""Drop-in surfaces for apps that already speak another service's protocol: Twilio
Verify v2 (``twilio``), Supabase Auth's Send-SMS hook (``supabase``) and Ory Kratos' HTTP
courier (``kratos``). Each module is the pure part — shapes, identifiers, signatures —
of its routes in ``otpgate.api``; none keeps state or does I/O.
"""
