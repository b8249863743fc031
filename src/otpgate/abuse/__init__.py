"""Abuse protection: rate limits, the SMS pumping guard, spend budgets, geo permissions,
number types and test numbers (``guard`` runs them; ``settings`` says how)."""
