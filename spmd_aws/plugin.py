"""Registers nothing yet: the AWS backend arrives with its own issue."""
