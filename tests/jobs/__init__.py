"""Tests of background jobs and the account settings they make."""
