"""Secretum: a telemedicine platform that keeps the French *secret médical*."""

__version__ = "0.1.0"
