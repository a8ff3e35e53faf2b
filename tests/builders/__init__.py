"""Builders of tiny test inputs shared by several test modules."""
