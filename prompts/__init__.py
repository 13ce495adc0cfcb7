"""Prompt templates per stage and variant (Jinja, package data) and their loader."""
