"""Alipay protocol core: keys, RSA2 signing, OpenAPI client, callbacks and the life-account gateway.

Import the submodules you need (``lifelink.alipay.callbacks``, ``lifelink.alipay.openapi`` ...).
This package deliberately imports nothing at import time: the webhook's cold start must not pay for
``httpx`` (only ``openapi`` imports it) or for crypto code it does not use.
"""
