"""lifelink: the Lambda layer shared by every function."""
