"""zeroparty: consent-first zero-party data capture and preference center."""

__version__ = "0.1.0"
