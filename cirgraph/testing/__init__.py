"""Test doubles that ship with the library (scripted chat models, a fake OpenAI-compatible server, tiny models).

They stand in only for model weights and endpoints, behind the same interfaces as the real clients.
"""
