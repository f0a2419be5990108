"""The embedded default: local stack, Alipay simulator and the lifelink command. Never deployed."""
