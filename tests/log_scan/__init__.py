"""The log scan: every log line the test session produces (in-process and in the local stacks it starts) is
searched for private keys, raw user ids and tokens (plugin.py, registered from tests/conftest.py)."""
