"""Cluster mode: several nodes sharing one state through a NATS JetStream log."""
